'use strict';
// Driving the Node-RED editor in Debian's Chromium with playwright-core (no browser download:
// .ci/run installs the `chromium` package). Everything a test does goes through the editor's own
// UI (palette, canvas, edit trays, menus, sidebars); page.evaluate only reads the editor's state
// (the one exception, opening a config node no node type uses, is documented where it happens).
const fs = require('node:fs');
const path = require('node:path');
const { chromium } = require('playwright-core');

const root = path.resolve(__dirname, '../..');
const CHROMIUM = process.env.COOLKIT_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const artifactsDir = path.join(root, 'test-artifacts', 'browser');
const PASSWORD = 'e2e-password'; // set by test/helpers/nrprocess.js

/** Chromium with a fresh, empty profile (playwright makes a temporary --user-data-dir). */
async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM} (.ci/run installs Debian's chromium; COOLKIT_CHROMIUM overrides the path)`);
  return chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true, timeout: 60000 });
}

// The editor reports some failures with console.log, not console.error: a node's editor script
// that throws while loading ("[module/set] ..."), exceptions in oneditprepare/oneditsave/...,
// a validator that throws, a definition function (label, paletteLabel, ...) that throws.
const EDITOR_LOGGED_ERRORS = /^(\[node-red-contrib-coolkit|oneditprepare|oneditsave|oneditcancel|oneditresize|oneditdelete|Definition error|Validation error|Unexpected error)/;

/**
 * Collect console errors, editor-logged errors and uncaught page errors, and the 404 answers of
 * this package's admin API that say "not deployed". `errors(ignore)` lists the entries
 * ({type, text, url, at}) that `ignore(entry, log)` does not explain; it is decided when asked,
 * so that a response body read after its console line still counts.
 */
function watchConsole(page) {
  const log = { entries: [], notDeployed: new Set(), pending: new Set(), phase: 'start' };
  page.on('console', (msg) => {
    const entry = { type: msg.type(), text: msg.text(), url: (msg.location() || {}).url || '', at: log.phase };
    const isError = entry.type === 'error' || (entry.type === 'log' && EDITOR_LOGGED_ERRORS.test(entry.text));
    if (isError) log.entries.push(entry);
  });
  page.on('pageerror', (err) => {
    log.entries.push({ type: 'pageerror', text: String((err && (err.stack || err.message)) || err), url: '', at: log.phase });
  });
  page.on('response', (res) => {
    if (res.status() !== 404 || !/\/coolkit\//.test(res.url())) return;
    const reading = res.text().then((body) => {
      try {
        if (JSON.parse(body).error === 'not deployed') log.notDeployed.add(res.url());
      } catch { /* not the admin API's JSON */ }
    }, () => {}).finally(() => log.pending.delete(reading));
    log.pending.add(reading);
  });
  /** Wait for the response bodies still being read. */
  log.settle = () => Promise.all([...log.pending]);
  log.errors = (ignore = () => false) => log.entries.filter((e) => !ignore(e, log));
  log.ignored = (ignore = () => false) => log.entries.filter((e) => ignore(e, log));
  return log;
}

/**
 * Turn off the welcome tour for the admin user (the user setting behind Settings > View > "Show
 * welcome tours"): on a fresh user directory it covers the canvas with a modal shade.
 */
async function skipWelcomeTour(nr) {
  const res = await nr.api('/settings/user', { method: 'POST', body: { editor: { view: { 'view-show-welcome-tours': false } } } });
  if (res.status !== 204 && res.status !== 200) throw new Error(`user settings: ${res.status} ${res.text}`);
}

/** Open the editor and log in through its login dialog; resolve once the workspace is ready. */
async function openEditor(page, base, { username = 'admin', password = PASSWORD } = {}) {
  await page.goto(base, { waitUntil: 'domcontentloaded', timeout: 60000 });
  await page.locator('#node-dialog-login-username').waitFor({ state: 'visible', timeout: 60000 });
  await page.locator('#node-dialog-login-username').fill(username);
  await page.locator('#node-dialog-login-password').fill(password);
  await page.locator('#node-dialog-login-submit').click();
  await page.locator('#red-ui-palette-container .red-ui-palette-node').first().waitFor({ state: 'visible', timeout: 60000 });
  // Nodes loaded and a flow tab open: the deploy button is there and the canvas has a workspace.
  await page.waitForFunction(() => window.RED && RED.workspaces && RED.workspaces.active() && $('#red-ui-header-button-deploy').length === 1 && !$('#red-ui-loading-progress').is(':visible'), null, { timeout: 60000 });
}

async function screenshot(page, name) {
  fs.mkdirSync(artifactsDir, { recursive: true });
  const file = path.join(artifactsDir, `${name.replace(/[^a-z0-9._-]+/gi, '_')}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** Ids of the nodes of the current flow tab, as the editor knows them. */
function nodeIdsOnTab(page) {
  return page.evaluate(() => {
    const ids = [];
    RED.nodes.eachNode((n) => { if (n.z === RED.workspaces.active()) ids.push(n.id); });
    return ids;
  });
}

/** Drag a node type from the palette onto the canvas at (x, y) of the chart; return its new id. */
async function dragFromPalette(page, type, x, y) {
  const before = new Set(await nodeIdsOnTab(page));
  const item = page.locator(`#red-ui-palette-container .red-ui-palette-node[data-palette-type="${type}"]`);
  await item.scrollIntoViewIfNeeded();
  const from = await item.boundingBox();
  const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
  await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
  await page.mouse.down();
  // jQuery UI draggable needs a few intermediate moves to start and track the drag.
  const to = { x: chart.x + x, y: chart.y + y };
  for (let i = 1; i <= 10; i++) {
    await page.mouse.move(from.x + ((to.x - from.x) * i) / 10, from.y + ((to.y - from.y) * i) / 10);
  }
  await page.mouse.up();
  await page.waitForFunction((prev) => {
    const ids = [];
    RED.nodes.eachNode((n) => { if (n.z === RED.workspaces.active() && !prev.includes(n.id)) ids.push(n.id); });
    return ids.length === 1 && document.getElementById(ids[0]) !== null;
  }, [...before], { timeout: 20000 });
  const added = (await nodeIdsOnTab(page)).filter((id) => !before.has(id));
  if (added.length !== 1) throw new Error(`expected one new node after dropping ${type}, got ${added.length}`);
  return added[0];
}

/** The node's body on the canvas (its <rect>), by node id. */
function canvasNode(page, id) {
  return page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"] > rect.red-ui-flow-node`);
}

/** Wait until an element stops moving (an edit tray slides in), e.g. before a screenshot. */
async function waitStable(locator, timeout = 30000) {
  const until = Date.now() + timeout;
  let last = null;
  for (;;) {
    const box = await locator.boundingBox().catch(() => null);
    if (box && last && box.x === last.x && box.y === last.y && box.width === last.width && box.height === last.height) return;
    if (Date.now() > until) throw new Error('element did not settle');
    last = box;
    await locator.page().waitForTimeout(150);
  }
}

/** True when the node's invalid-properties triangle is shown on the canvas. */
async function hasErrorTriangle(page, id) {
  return page.locator(`#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"] .red-ui-flow-node-error`).isVisible();
}

module.exports = {
  launchBrowser, watchConsole, skipWelcomeTour, openEditor, screenshot, dragFromPalette, canvasNode, hasErrorTriangle, waitStable, nodeIdsOnTab, artifactsDir, CHROMIUM,
};
