'use strict';
// The editor as a user meets it, in Debian's Chromium: the npm tarball installed into a fresh
// Node-RED user directory, Node-RED started with admin authentication, a login through the
// editor's form. Then, for every node set package.json lists (read at run time: new node types
// are covered without touching this file):
//   - every node type is in the palette under "coolkit" (config nodes: registered, category config);
//   - each edit dialog opens from the canvas (double click) or the config sidebar with no console
//     error, marks bad values (.input-error), saves them with the invalid triangle shown, and saves
//     again clean once fixed;
//   - the node's en-US help renders in the Help sidebar;
//   - each per-message value listed in TYPED is a typed input (str, msg, flow, global, env):
//     switched to msg with a value, saved and opened again, it keeps both;
// and finally an example is imported through Menu > Import > Examples, its server moved to a
// free port in the config dialog, deployed, and a simulated device's state shows in the debug
// sidebar. Screenshots go to test-artifacts/browser/.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const { installPackage, NodeRedProcess, freePort, runtime } = require('../helpers/nrprocess');
const { waitFor } = require('../helpers/raw');
const B = require('../helpers/browser');

const root = path.resolve(__dirname, '../..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const MODULE = pkg.name;
const SETS = Object.keys(pkg['node-red'].nodes);
const CATEGORY = 'coolkit';
const UI = 30000; // generous: a shared, noisy 2-core machine
// The per-message values each node type offers as a typed input (str, msg, flow, global, env).
const TYPED = {
  'sonoff-device-out': ['deviceid'],
  'sonoff-ota': ['deviceid', 'version'],
  'thermostat-targets': ['deviceid'],
  'sonoff-timer': ['deviceid'],
};

// Values tried on every validated text field: the first one the node's own validator rejects is
// typed in; to fix, the field's original value (or the first candidate it accepts) is put back.
const BAD = ['70000', 'xyz', '-1', '0', '1.5', 'not valid!', ''];
const GOOD = ['', '1', '10', '600', '1000aa0001', '127.0.0.1'];

/** The first paragraph of a node type's en-US help, as plain text. */
function helpSnippet(type, setFile) {
  const base = path.basename(setFile, '.js');
  const candidates = [path.join(root, 'locales', 'en-US', `${base}.html`), path.join(root, 'nodes', `${base}.html`)];
  for (const file of candidates) {
    if (!fs.existsSync(file)) continue;
    const html = fs.readFileSync(file, 'utf8');
    const re = new RegExp(`<script[^>]*data-help-name=["']${type.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}["'][^>]*>([\\s\\S]*?)</script>`);
    const m = re.exec(html);
    if (!m) continue;
    const p = /<p[^>]*>([\s\S]*?)<\/p>/.exec(m[1]);
    const text = (p ? p[1] : m[1])
      .replace(/<[^>]+>/g, '')
      .replace(/&#(\d+);/g, (_, n) => String.fromCodePoint(Number(n)))
      .replace(/&#x([0-9a-f]+);/gi, (_, n) => String.fromCodePoint(parseInt(n, 16)))
      .replace(/&nbsp;/g, ' ').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&apos;/g, "'")
      .replace(/&(?!amp;)[a-z]+;[\s\S]*$/i, '') // stop before any other named entity
      .replace(/&amp;/g, '&')
      .replace(/\s+/g, ' ')
      .trim();
    return text.slice(0, 120).trim();
  }
  return null;
}

describe(`editor in Chromium: packed module in ${runtime} on Node ${process.version}`, function () {
  this.timeout(120000);
  this.slow(30000);

  let nr;
  let userDir;
  let browser;
  let page;
  let consoleLog;
  const setInfo = {}; // set name -> { types, enabled, err, file }
  const sims = [];

  // Console entries that are expected, each with its reason:
  const ignore = (e, log) => (
    // Before logging in, the editor asks for /settings, gets 401 and shows its login dialog:
    // Chromium logs the 401 response as a console error.
    (e.at === 'login' && e.type === 'error' && /status of 401/.test(e.text))
    // Before the first deploy, the admin API of a config node answers 404 {"error":"not
    // deployed"} (the device picker, the server's Devices tab), which the editor shows as
    // "deploy first". Chromium logs the 404 response itself as a console error. Only 404s whose
    // body really says "not deployed" are let through.
    || (e.type === 'error' && /status of 404/.test(e.text) && log.notDeployed.has(e.url))
  );

  // Each test answers for the console entries since it started.
  let consoleMark = 0;
  beforeEach(() => { consoleMark = consoleLog ? consoleLog.entries.length : 0; });
  function consoleErrors() {
    return consoleLog.errors(ignore).filter((e) => consoleLog.entries.indexOf(e) >= consoleMark).map((e) => `${e.type}: ${e.text}${e.url ? ` (${e.url})` : ''}`);
  }
  async function assertNoConsoleErrors(what) {
    await consoleLog.settle();
    assert.deepEqual(consoleErrors(), [], `console errors during ${what}`);
  }

  before(async function () {
    this.timeout(240000);
    fs.rmSync(B.artifactsDir, { recursive: true, force: true });
    ({ userDir } = installPackage());
    nr = new NodeRedProcess(userDir);
    await nr.start();
    await B.skipWelcomeTour(nr);
    const res = await nr.api('/nodes', { headers: { Accept: 'application/json' } });
    assert.equal(res.status, 200, res.text);
    for (const s of res.json.filter((x) => x.module === MODULE)) setInfo[s.name] = { types: s.types, enabled: s.enabled, err: s.err, file: pkg['node-red'].nodes[s.name] };
    browser = await B.launchBrowser();
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.setDefaultTimeout(UI);
    consoleLog = B.watchConsole(page);
    consoleLog.phase = 'login';
    await B.openEditor(page, nr.base);
    consoleLog.phase = 'editor';
    // The Help sidebar stays in front while dialogs are tested (it is enabled while editing).
    await page.locator('#red-ui-sidebar .red-ui-tab-link-buttons a[href="#help"]').click();
  });

  afterEach(async function () {
    if (this.currentTest.state === 'failed' && page) {
      await B.screenshot(page, `FAILED-${this.currentTest.title}`).catch(() => {});
      // Leave no edit tray open for the next test: cancel them, innermost first.
      for (let i = 0; i < 5; i++) {
        const cancel = page.locator('#node-config-dialog-cancel:visible, #node-dialog-cancel:visible').first();
        if (!(await cancel.count())) break;
        await cancel.click({ timeout: 5000 }).catch(() => {});
        await page.waitForTimeout(500);
      }
    }
  });

  after(async function () {
    this.timeout(60000);
    if (consoleLog) await consoleLog.settle();
    const ignored = consoleLog ? consoleLog.ignored(ignore) : [];
    if (ignored.length) console.log(`      (expected console errors, ignored: ${ignored.map((e) => `${e.text} ${e.url}`).join('; ')})`);
    for (const s of sims) await s.stop().catch(() => {});
    if (browser) await browser.close().catch(() => {});
    if (nr) await nr.stop();
  });

  // ---- helpers (UI actions; page.evaluate only reads the editor's state) ---------------------

  async function typeInto(selector, value) {
    const input = page.locator(selector);
    await input.fill(String(value));
    await input.press('Tab'); // blur: the editor validates on change
  }

  async function expectMarked(id, marked) {
    const sel = marked ? `#${id}.input-error` : `#${id}:not(.input-error)`;
    await page.locator(sel).waitFor({ state: 'attached', timeout: UI }).catch(() => {
      throw new Error(`#${id} should ${marked ? '' : 'not '}be marked invalid (.input-error)`);
    });
  }

  async function expectHelp(type) {
    const snippet = helpSnippet(type, setOf(type).file);
    assert.ok(snippet, `${type}: no en-US help (data-help-name="${type}") in locales/en-US or nodes/`);
    const stack = page.locator('#red-ui-sidebar .red-ui-sidebar-help-stack');
    await waitFor(async () => {
      const text = (await stack.innerText().catch(() => '')).replace(/\s+/g, ' ');
      return text.includes(snippet);
    }, UI, 100).catch(async () => {
      const text = (await stack.innerText().catch(() => '')).replace(/\s+/g, ' ').slice(0, 300);
      throw new Error(`the Help sidebar does not show the help of ${type}; expected "${snippet}", it shows "${text}"`);
    });
    assert.equal(await stack.locator('.red-ui-help-info-none').count(), 0, `${type}: help sidebar says there is no help`);
  }

  function setOf(type) {
    const name = Object.keys(setInfo).find((s) => setInfo[s].types.includes(type));
    return setInfo[name];
  }

  async function typeDefs() {
    return page.evaluate((types) => types.map((type) => {
      const def = RED.nodes.getType(type);
      if (!def) return { type, registered: false };
      const configProps = Object.keys(def.defaults || {}).filter((p) => def.defaults[p].type && RED.nodes.getType(def.defaults[p].type) && RED.nodes.getType(def.defaults[p].type).category === 'config')
        .map((p) => ({ prop: p, type: def.defaults[p].type, required: !!def.defaults[p].required }));
      return { type, registered: true, category: def.category, configProps };
    }), Object.values(setInfo).flatMap((s) => s.types));
  }

  /**
   * The validated text fields of the open dialog, tab by tab: {prop, id, tab, bad, good}, where
   * `bad` is a value the node's own validator rejects and `good` one it accepts.
   */
  async function validatedFields(type, nodeId, prefix, formSel) {
    const tabs = page.locator(`${formSel} .red-ui-tabs li.red-ui-tab a.red-ui-tab-label`);
    const tabCount = await tabs.count();
    const fields = [];
    for (let t = 0; t < Math.max(1, tabCount); t++) {
      if (tabCount) await showTab(formSel, t);
      const found = await page.evaluate(({ type, nodeId, prefix, bad, good }) => {
        const def = RED.nodes.getType(type);
        const node = Object.assign({}, RED.nodes.node(nodeId) || {}, { _def: def, type });
        const out = [];
        for (const prop of Object.keys(def.defaults || {})) {
          const d = def.defaults[prop];
          if (d.type) continue; // config-node selects
          const input = $(`#${prefix}-${prop}`);
          // A typed input (typedInput hides the <input> and shows its own text field beside it):
          // tried while its type is "str", by typing into its own text field.
          const typed = input.next('.red-ui-typedInput-container');
          if (input.length !== 1 || !input.is('input') || !['text', 'number', undefined].concat(typed.length ? ['hidden'] : []).includes(input.attr('type'))) continue;
          const typedField = typed.find('input.red-ui-typedInput-input');
          if (typed.length) {
            if (!typed.is(':visible') || typedField.length !== 1 || !typedField.is(':visible') || input.typedInput('type') !== 'str') continue;
          } else if (!input.is(':visible') || input.prop('readonly') || input.prop('disabled')) continue;
          const hasValidate = typeof d.validate === 'function';
          if (!hasValidate && !d.required) continue;
          const accepts = (v) => {
            if (d.required && v === '') return false;
            if (!hasValidate) return true;
            try {
              const r = d.validate.call(node, v, {});
              return !(r === false || typeof r === 'string' || (Array.isArray(r) && r.length > 0));
            } catch (err) {
              return false;
            }
          };
          const badValue = bad.find((v) => !accepts(v));
          if (badValue === undefined) continue;
          const original = input.val();
          const goodValue = accepts(original) ? original : good.find(accepts);
          if (goodValue === undefined) continue;
          const id = input.attr('id');
          out.push({ prop, id, sel: typed.length ? `#${id} + .red-ui-typedInput-container input.red-ui-typedInput-input` : `#${id}`, bad: badValue, good: goodValue });
        }
        return out;
      }, { type, nodeId, prefix, bad: BAD, good: GOOD });
      for (const f of found) if (!fields.some((x) => x.prop === f.prop)) fields.push({ ...f, tab: tabCount ? t : null });
    }
    if (tabCount) await showTab(formSel, 0);
    return fields;
  }

  async function showTab(formSel, tab) {
    if (tab === null) return;
    const li = page.locator(`${formSel} .red-ui-tabs li.red-ui-tab`).nth(tab);
    // RED.tabs takes a second click on any tab within 400 ms for a double click and does not
    // switch: click again until the tab is the active one.
    await waitFor(async () => {
      if (await li.evaluate((el) => el.classList.contains('active'))) return true;
      await li.locator('a.red-ui-tab-label').click();
      return li.evaluate((el) => el.classList.contains('active'));
    }, UI, 250);
  }

  /** Type each bad value, see the field marked; put the good value back, see the mark go. */
  async function checkFields(type, fields, formSel) {
    assert.ok(fields.length > 0, `${type}: the edit dialog has no validated text field to try a bad value in`);
    for (const f of fields) {
      await showTab(formSel, f.tab);
      await typeInto(f.sel, f.bad);
      await expectMarked(f.id, true).catch(async (err) => {
        const why = await page.evaluate(({ type, prop, bad }) => {
          const v = RED.nodes.getType(type).defaults[prop].validate;
          if (typeof v !== 'function') return '';
          let r;
          try { r = v.call({}, bad, {}); } catch (e) { r = `throws ${e.message}`; }
          return ` Its validator answers ${JSON.stringify(r)} for ${JSON.stringify(bad)}${v.length !== 2 && typeof r === 'string'
            ? ', but it declares one parameter: Node-RED then takes it for a boolean validator and a message string counts as valid. Declare it as function (v, opt).'
            : '.'}`;
        }, { type, prop: f.prop, bad: f.bad });
        throw new Error(`${type}: ${err.message}.${why}`);
      });
      await typeInto(f.sel, f.good);
      await expectMarked(f.id, false);
    }
    await showTab(formSel, fields[0].tab);
  }

  async function openNodeDialog(id) {
    // A double click that lands while the previous tray is still sliding out is swallowed by
    // the editor: wait for the trays to be gone, and click again if no dialog comes.
    await page.locator('.red-ui-tray').first().waitFor({ state: 'detached', timeout: 10000 }).catch(() => undefined);
    for (let attempt = 1; ; attempt++) {
      await B.canvasNode(page, id).dblclick();
      try {
        await page.locator('#dialog-form').waitFor({ state: 'visible', timeout: attempt < 3 ? 5000 : 30000 });
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
    await page.locator('#node-dialog-ok').waitFor({ state: 'visible' });
    await B.waitStable(page.locator('#node-dialog-ok')); // the tray slides in
  }
  async function closeNodeDialog() {
    await page.locator('#node-dialog-ok').click();
    await page.locator('#dialog-form').waitFor({ state: 'detached' });
  }
  async function waitConfigDialog() {
    await page.locator('#node-config-dialog-edit-form').waitFor({ state: 'visible' });
    await page.locator('#node-config-dialog-ok').waitFor({ state: 'visible' });
    await B.waitStable(page.locator('#node-config-dialog-ok')); // the tray slides in
  }
  async function closeConfigDialog() {
    await page.locator('#node-config-dialog-ok').click();
    await page.locator('#node-config-dialog-edit-form').waitFor({ state: 'detached' });
  }
  function configButton(prefix, prop, which) {
    // Node-RED 4: #node-input-btn-<prop>-add / -edit; older editors: one #node-input-lookup-<prop>.
    return page.locator(`#${prefix}-btn-${prop}-${which}, #${prefix}-lookup-${prop}`).first();
  }

  async function nodeState(id) {
    return page.evaluate((nid) => {
      const n = RED.nodes.node(nid);
      return n ? { valid: n.valid, errors: n.validationErrors || [], type: n.type } : null;
    }, id);
  }
  async function expectTriangle(id, shown) {
    await waitFor(async () => (await B.hasErrorTriangle(page, id)) === shown, UI, 100).catch(async () => {
      throw new Error(`node ${id} should ${shown ? '' : 'not '}show the invalid triangle; editor state ${JSON.stringify(await nodeState(id))}`);
    });
  }

  /** Expand a debug sidebar message and its payload; wait until the text shows `re`. */
  async function expectPayloadShows(msg, re) {
    await msg.locator('.red-ui-debug-msg-element').first().click();
    // (the collapsed one-line preview has hidden key labels too: take the visible one)
    await msg.locator('.red-ui-debug-msg-object-key:visible', { hasText: /^payload$/ }).first().click();
    await waitFor(async () => re.test(await msg.innerText()), 5000, 100);
  }

  async function openSidebarTab(name) {
    await page.locator(`#red-ui-sidebar .red-ui-tab-link-buttons a[href="#${name}"]`).click();
  }

  /** The config sidebar entry of a config node (entries keep the node id in jQuery data). */
  async function configEntry(configId) {
    const index = await page.evaluate((cid) => $('#red-ui-sidebar-node-config .red-ui-sidebar-node-config-list li').toArray().findIndex((li) => $(li).data('data-node-id') === cid), configId);
    assert.ok(index >= 0, `config node ${configId} is not listed in the Configuration nodes sidebar`);
    return page.locator('#red-ui-sidebar-node-config .red-ui-sidebar-node-config-list li').nth(index);
  }

  // Where the next dropped node goes on the canvas.
  let slot = 0;
  function nextSpot() {
    const spot = { x: 150 + (slot % 3) * 260, y: 80 + Math.floor(slot / 3) * 80 };
    slot += 1;
    return spot;
  }

  /** Make every config-node property of the open node dialog point at an existing config node. */
  async function fillConfigSelects(def) {
    for (const cp of def.configProps) {
      const sel = page.locator(`#node-input-${cp.prop}`);
      if (!(await sel.count())) continue;
      const value = await sel.inputValue();
      if (value && value !== '_ADD_') continue;
      const existing = await sel.evaluate((el) => Array.from(el.options).map((o) => o.value).filter((v) => v && v !== '_ADD_'));
      if (existing.length) {
        await sel.selectOption(existing[0]);
      } else {
        await configButton('node-input', cp.prop, 'add').click();
        await waitConfigDialog();
        await closeConfigDialog();
      }
    }
  }

  // ---- tests -------------------------------------------------------------------------------------

  it('loads every node set package.json lists, and puts every node type in the palette under coolkit', async () => {
    consoleMark = 0; // what the editor logged while loading counts here
    assert.deepEqual(Object.keys(setInfo).sort(), [...SETS].sort(), 'node sets known to Node-RED vs package.json');
    for (const [name, s] of Object.entries(setInfo)) {
      assert.equal(s.enabled, true, `${name} is disabled`);
      assert.equal(s.err, undefined, `${name} failed to load: ${s.err}`);
    }
    const defs = await typeDefs();
    const header = page.locator(`#red-ui-palette-header-${CATEGORY}`);
    await header.scrollIntoViewIfNeeded();
    assert.equal((await header.innerText()).trim(), CATEGORY);
    for (const d of defs) {
      assert.ok(d.registered, `${d.type} has no editor definition (missing or broken ${d.type}.html?)`);
      if (d.category === 'config') continue; // config nodes are edited from the nodes that use them, not dragged
      assert.equal(d.category, CATEGORY, `${d.type} is in palette category ${d.category}`);
      const item = page.locator(`#red-ui-palette-container-${CATEGORY} .red-ui-palette-node[data-palette-type="${d.type}"]`);
      await item.scrollIntoViewIfNeeded();
      assert.ok(await item.isVisible(), `${d.type} is not shown in the ${CATEGORY} palette category`);
      assert.notEqual((await item.innerText()).trim(), '', `${d.type} has an empty palette label`);
    }
    await B.screenshot(page, '00-palette');
    await assertNoConsoleErrors('loading the editor');
  });

  for (const setName of SETS) {
    it(`set ${setName}: each edit dialog opens with no console error, marks bad values, saves; help renders in the sidebar`, async function () {
      this.timeout(180000);
      const info = setInfo[setName];
      assert.ok(info, `${setName} was not loaded by Node-RED`);
      const defs = (await typeDefs()).filter((d) => info.types.includes(d.type));
      // Config types first: the other types of the set may need one.
      defs.sort((a, b) => (a.category === 'config' ? 0 : 1) - (b.category === 'config' ? 0 : 1));
      for (const def of defs) {
        assert.ok(def.registered, `${def.type} has no editor definition`);
        if (def.category === 'config') await checkConfigType(def);
        else await checkNodeType(def);
      }
      await assertNoConsoleErrors(`the edit dialogs of ${setName}`);
    });
  }

  async function checkNodeType(def) {
    const type = def.type;
    const spot = nextSpot();
    const id = await B.dragFromPalette(page, type, spot.x, spot.y);
    await openNodeDialog(id);
    await expectHelp(type);
    await B.screenshot(page, `${type}-dialog`);
    await assertNoConsoleErrors(`opening the ${type} dialog`);
    await fillConfigSelects(def);

    const fields = await validatedFields(type, id, 'node-input', '#dialog-form');
    await checkFields(type, fields, '#dialog-form');

    // Save with a bad value (a typed one rather than an empty field, when there is one): the
    // dialog closes and the node shows the invalid triangle.
    const f = fields.find((x) => x.bad !== '') || fields[0];
    await showTab('#dialog-form', f.tab);
    await typeInto(f.sel, f.bad);
    await expectMarked(f.id, true);
    await B.screenshot(page, `${type}-dialog-invalid`);
    await closeNodeDialog();
    await expectTriangle(id, true);
    await B.screenshot(page, `${type}-canvas-invalid`);

    // Open it again: the field is still marked; fix it and save: the triangle goes.
    await openNodeDialog(id);
    await showTab('#dialog-form', f.tab);
    await expectMarked(f.id, true);
    await typeInto(f.sel, f.good);
    await expectMarked(f.id, false);
    await closeNodeDialog();
    await expectTriangle(id, false);
    const state = await nodeState(id);
    assert.equal(state.valid, true, `${type} is still invalid after fixing: ${state.errors.join('; ')}`);
    await checkTypedInputs(type, id);
    await assertNoConsoleErrors(`editing ${type}`);
  }

  /**
   * The per-message values that are typed inputs (issue 10): each is rendered as a typedInput
   * offering str, msg, flow, global and env; switched to msg with a value, saved, and opened again,
   * it keeps the type and the value.
   */
  async function checkTypedInputs(type, id) {
    const props = TYPED[type];
    if (!props) return;
    for (const prop of props) {
      await openNodeDialog(id);
      const container = page.locator(`#node-input-${prop} + .red-ui-typedInput-container`);
      await container.waitFor({ state: 'visible' }).catch(() => {
        throw new Error(`${type}: ${prop} is not rendered as a typed input`);
      });
      assert.equal(await page.locator(`#node-input-${prop}Type`).inputValue(), 'str', `${type}: a new node's ${prop} is a string`);
      // Pick "msg" from the type menu the way a user does.
      await container.locator('button.red-ui-typedInput-type-select').click();
      const menu = page.locator('.red-ui-typedInput-options:visible');
      for (const t of ['str', 'msg', 'flow', 'global', 'env']) {
        assert.equal(await menu.locator(`a[value="${t}"]`).count(), 1, `${type}: ${prop} offers no "${t}" type`);
      }
      await menu.locator('a[value="msg"]').click();
      await waitFor(async () => (await page.locator(`#node-input-${prop}Type`).inputValue()) === 'msg', UI, 100);
      const value = `target.${prop}`;
      await typeInto(`#node-input-${prop} + .red-ui-typedInput-container input.red-ui-typedInput-input`, value);
      await expectMarked(`node-input-${prop}`, false);
      await B.screenshot(page, `${type}-${prop}-typed-msg`);
      await closeNodeDialog();
      const saved = await page.evaluate(({ nid, p }) => { const n = RED.nodes.node(nid); return { value: n[p], type: n[`${p}Type`], valid: n.valid }; }, { nid: id, p: prop });
      assert.deepEqual(saved, { value, type: 'msg', valid: true }, `${type}: ${prop} as saved`);
      await expectTriangle(id, false);

      // Open it again: still msg, same value.
      await openNodeDialog(id);
      await waitFor(async () => (await page.locator(`#node-input-${prop}Type`).inputValue()) === 'msg', UI, 100).catch(() => {
        throw new Error(`${type}: ${prop} did not keep the msg type`);
      });
      assert.equal(await page.locator(`#node-input-${prop} + .red-ui-typedInput-container input.red-ui-typedInput-input`).inputValue(), value, `${type}: ${prop} value after reopening`);
      assert.match(await container.locator('.red-ui-typedInput-type-label').innerText(), /msg\./, `${type}: ${prop} shows the msg type`);
      await closeNodeDialog();
    }
  }

  async function checkConfigType(def) {
    const type = def.type;
    // Open it the way a user does: from a node that uses it (prefer one of this package).
    const users = await page.evaluate((cfgType) => {
      const out = [];
      RED.nodes.registry.getNodeTypes().forEach((t) => {
        const d = RED.nodes.getType(t);
        if (!d || d.category === 'config') return;
        for (const p of Object.keys(d.defaults || {})) if (d.defaults[p].type === cfgType) { out.push({ type: t, prop: p, module: d.set && d.set.module }); break; }
      });
      return out;
    }, type);
    const user = users.find((u) => u.module === MODULE) || users[0];
    let userId = null;
    if (user) {
      const spot = nextSpot();
      userId = await B.dragFromPalette(page, user.type, spot.x, spot.y);
      await openNodeDialog(userId);
      await configButton('node-input', user.prop, 'add').click();
    } else {
      // No node type uses it: open the add dialog the way the editor's own config select does.
      await page.evaluate((cfgType) => RED.editor.editConfig('', cfgType, '_ADD_'), type);
    }
    await waitConfigDialog();
    await expectHelp(type); // the editor shows the config node's help when its dialog opens
    await B.screenshot(page, `${type}-dialog`);
    await assertNoConsoleErrors(`opening the ${type} dialog`);

    const formSel = '#node-config-dialog-edit-form';
    const fields = await validatedFields(type, null, 'node-config-input', formSel);
    await checkFields(type, fields, formSel);
    for (const [i, label] of (await page.locator(`${formSel} .red-ui-tabs li.red-ui-tab a.red-ui-tab-label`).allInnerTexts()).entries()) {
      await showTab(formSel, i);
      await B.screenshot(page, `${type}-dialog-tab-${i}-${label.trim()}`);
    }
    // Save with a bad value (a typed one rather than an empty field, when there is one).
    const f = fields.find((x) => x.bad !== '') || fields[0];
    await showTab(formSel, f.tab);
    await typeInto(f.sel, f.bad);
    await expectMarked(f.id, true);
    await B.screenshot(page, `${type}-dialog-invalid`);
    await closeConfigDialog();

    let configId;
    if (user) {
      configId = await page.locator(`#node-input-${user.prop}`).inputValue();
      assert.ok(configId && configId !== '_ADD_', `the new ${type} is not selected in the ${user.type} dialog`);
      await expectMarked(`node-input-${user.prop}`, true); // the node refers to an invalid config node
      await closeNodeDialog();
      await expectTriangle(userId, true);
      const st = await nodeState(userId);
      assert.equal(st.valid, false);
    } else {
      configId = await page.evaluate((cfgType) => { let id = null; RED.nodes.eachConfig((n) => { if (n.type === cfgType) id = n.id; }); return id; }, type);
    }
    // The Configuration nodes sidebar shows it invalid too; open it from there and fix it.
    await openSidebarTab('config');
    let entry = await configEntry(configId);
    await entry.scrollIntoViewIfNeeded();
    assert.ok(await entry.locator('.red-ui-flow-node-error').isVisible(), `${type} is not shown invalid in the Configuration nodes sidebar`);
    await B.screenshot(page, `${type}-config-sidebar-invalid`);
    await entry.locator('.red-ui-palette-node').dblclick();
    await waitConfigDialog();
    await showTab(formSel, f.tab);
    await expectMarked(f.id, true);
    await typeInto(f.sel, f.good);
    await expectMarked(f.id, false);
    await closeConfigDialog();
    entry = await configEntry(configId);
    assert.equal(await entry.locator('.red-ui-flow-node-error').count(), 0, `${type} is still shown invalid in the Configuration nodes sidebar`);
    if (user) {
      await expectTriangle(userId, false);
      const st = await nodeState(userId);
      assert.equal(st.valid, true, `${user.type} is still invalid after fixing its ${type}: ${st.errors.join('; ')}`);
    }
    const cfg = await nodeState(configId);
    assert.equal(cfg.valid, true, `${type} is still invalid after fixing: ${cfg.errors.join('; ')}`);
    await openSidebarTab('help');
    await assertNoConsoleErrors(`editing ${type}`);
  }

  it('imports an example from Menu > Import > Examples, deploys it on a free port, and shows a simulated device in the debug sidebar', async function () {
    this.timeout(180000);
    // The simulator from the installed tarball: dist/ of the work tree may be mid-rebuild.
    const { SimulatedDevice } = require(path.join(userDir, 'node_modules', MODULE, 'dist', 'src', 'sim'));
    // Start from an empty flow: delete what the dialog tests left (canvas, then config nodes).
    await page.locator('#red-ui-workspace-chart').click({ position: { x: 700, y: 780 } });
    await page.keyboard.press('Control+a');
    await page.keyboard.press('Delete');
    await openSidebarTab('config');
    const configEntries = page.locator('#red-ui-sidebar-node-config .red-ui-sidebar-node-config-list li .red-ui-palette-node');
    if (await configEntries.count()) {
      await configEntries.first().click();
      await page.keyboard.press('Control+a');
      await page.keyboard.press('Delete');
      await waitFor(async () => (await configEntries.count()) === 0, UI, 100);
    }
    assert.equal((await B.nodeIdsOnTab(page)).length, 0);

    // Menu > Import > Examples > node-red-contrib-coolkit > the first example.
    const examples = fs.readdirSync(path.join(root, 'examples')).filter((f) => f.endsWith('.json')).sort();
    const example = examples[0];
    const flow = JSON.parse(fs.readFileSync(path.join(root, 'examples', example), 'utf8'));
    await page.locator('#red-ui-header-button-sidemenu').click();
    await page.locator('#menu-item-import').click();
    await page.locator('#red-ui-clipboard-dialog-import-tabs a.red-ui-tab-label', { hasText: /^Examples$/ }).click();
    const tab = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await tab.locator('.red-ui-treeList-label', { hasText: MODULE }).first().click();
    await tab.locator('.red-ui-treeList-label', { hasText: example.replace(/\.json$/, '') }).first().click();
    await B.screenshot(page, 'example-import-dialog');
    await page.locator('#red-ui-clipboard-dialog-ok').click();
    // The imported nodes follow the mouse until a click places them.
    const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
    await page.mouse.move(chart.x + 120, chart.y + 60, { steps: 5 });
    await page.mouse.click(chart.x + 120, chart.y + 60);
    const byType = (t) => flow.filter((n) => n.type === t);
    await waitFor(async () => (await B.nodeIdsOnTab(page)).length === flow.filter((n) => n.wires).length, UI, 100);
    const server = byType('coolkit-server')[0];
    const inNode = byType('sonoff-device-in')[0];
    const debug = flow.find((n) => n.type === 'debug' && n.wires && inNode.wires[0].includes(n.id));
    const injectOn = flow.find((n) => n.type === 'inject' && n.payload === 'on');
    const outNode = byType('sonoff-device-out')[0];
    assert.ok(server && inNode && debug && injectOn && outNode, 'the example has a server, an in node wired to a debug node, an out node and an "on" inject');

    // The example's server uses 8443, which may be taken here: move it to a free port, in the
    // server's own dialog, opened from the sonoff in node's pencil button.
    const port = await freePort();
    await openNodeDialog(inNode.id);
    await configButton('node-input', 'server', 'edit').click();
    await waitConfigDialog();
    await typeInto('#node-config-input-bind', '127.0.0.1');
    await typeInto('#node-config-input-port', port);
    await typeInto('#node-config-input-advertiseHost', '127.0.0.1');
    await B.screenshot(page, 'example-server-dialog');
    await closeConfigDialog();
    await closeNodeDialog();
    await B.screenshot(page, 'example-imported');

    await page.locator('#red-ui-header-button-deploy').click();
    // Deployed: the button's spinner has gone and the editor has no undeployed change.
    await page.waitForFunction(() => $('.red-ui-deploy-button-spinner').is(':hidden') && !RED.nodes.dirty(), null, { timeout: 60000 });
    const deployed = await nr.api('/flows');
    const deployedServer = (Array.isArray(deployed.json) ? deployed.json : deployed.json.flows).find((n) => n.id === server.id);
    assert.ok(deployedServer, `the example's server ${server.id} is not in the deployed flows`);
    assert.equal(String(deployedServer.port), String(port));
    const base = `https://127.0.0.1:${port}`;
    // The sonoff in node's status says when the server listens (first start: it makes its
    // certificate).
    const status = page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${inNode.id}"] .red-ui-flow-node-status-label`);
    await waitFor(async () => (await status.textContent().catch(() => '') || '').includes(`:${port}`), 60000, 200);

    // A simulated Sonoff connects: its state report reaches the debug sidebar.
    await openSidebarTab('debug');
    const deviceid = outNode.deviceid; // the example's out node switches this device
    const sim = new SimulatedDevice({ server: base, deviceid, connectHost: '127.0.0.1', reconnect: { minMs: 200, maxMs: 1000 } });
    sims.push(sim);
    await sim.start();
    // The device's state reports ("update" events) from the example's debug node.
    const updates = page.locator(`#red-ui-sidebar .red-ui-debug-msg.red-ui-debug-msg-node-${debug.id}`)
      .filter({ hasText: `"${deviceid}"` }).filter({ hasText: '"update"' });
    const report = updates.first();
    await report.waitFor({ state: 'visible', timeout: 60000 });
    assert.match(await report.innerText(), new RegExp(`${deviceid} : msg : Object`));
    await expectPayloadShows(report, /switch\s*:\s*"off"/);
    await B.screenshot(page, 'example-debug-sidebar-report');

    // Click the example's "on" inject button: the device switches on and reports it.
    const before = await updates.count();
    await page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${injectOn.id}"] .red-ui-flow-node-button`).click();
    await waitFor(() => sim.state.switch === 'on', 30000, 100);
    await waitFor(async () => (await updates.count()) > before, UI, 100);
    let shown = false;
    for (let i = before; i < await updates.count() && !shown; i++) {
      shown = await expectPayloadShows(updates.nth(i), /switch\s*:\s*"on"/).then(() => true, () => false);
    }
    assert.ok(shown, 'no state report with switch "on" in the debug sidebar after the "on" inject');
    await B.screenshot(page, 'example-debug-sidebar');
    await assertNoConsoleErrors('importing and running the example');
  });
});
