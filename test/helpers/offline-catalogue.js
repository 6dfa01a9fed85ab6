'use strict';
// Preloaded into `node-red-dev validate`: this workplace cannot reach catalogue.nodered.org, so
// the Flow Library catalogue is answered with a local stub (no modules). Every other check runs
// for real (package.json, node files, examples, dependencies from the npm registry); only the
// "type name already used by another catalogue module" check (N01) sees an empty catalogue.
const path = require('node:path');
const devDir = path.dirname(require.resolve('node-red-dev/package.json'));
const axios = require(require.resolve('axios', { paths: [devDir] }));
axios.interceptors.request.use((config) => {
  if (String(config.url).includes('catalogue.nodered.org')) {
    config.adapter = async (cfg) => ({ data: { name: 'stub', updated_at: new Date().toISOString(), modules: [] }, status: 200, statusText: 'OK', headers: {}, config: cfg, request: {} });
  }
  return config;
});
