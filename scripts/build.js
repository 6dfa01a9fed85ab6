#!/usr/bin/env node
'use strict';
// Build: compile TypeScript with tsc, then place each node's editor .html and the locales
// beside the compiled node files, where Node-RED looks for them (dist/nodes/<type>.html,
// dist/nodes/locales/<lang>/<type>.{json,html}).
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const dist = path.join(root, 'dist');

fs.rmSync(dist, { recursive: true, force: true });
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', path.join(root, 'tsconfig.json')], {
  stdio: 'inherit',
  cwd: root,
});

const nodesOut = path.join(dist, 'nodes');
fs.mkdirSync(nodesOut, { recursive: true });
for (const file of fs.readdirSync(path.join(root, 'nodes'))) {
  if (file.endsWith('.html')) fs.copyFileSync(path.join(root, 'nodes', file), path.join(nodesOut, file));
}
const iconsDir = path.join(root, 'nodes', 'icons');
if (fs.existsSync(iconsDir)) fs.cpSync(iconsDir, path.join(nodesOut, 'icons'), { recursive: true });
fs.cpSync(path.join(root, 'locales'), path.join(nodesOut, 'locales'), { recursive: true });

for (const cli of [path.join(dist, 'src', 'sim', 'cli.js'), path.join(dist, 'src', 'provision', 'cli.js')]) {
  if (fs.existsSync(cli)) fs.chmodSync(cli, 0o755);
}
