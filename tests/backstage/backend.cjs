// Backstage's own kubernetes backend, unmodified from npm (@backstage/plugin-kubernetes-backend on
// @backstage/backend-defaults), started as a Backstage app starts it. The tests run it beside `kubeauth serve`
// on the same app-config file and the same API server, and compare their answers.
//
// Usage: BACKSTAGE_BACKEND_MODULES=<node_modules folder> node backend.cjs --config app-config.yaml
const path = require('node:path');

const modules = process.env.BACKSTAGE_BACKEND_MODULES;
if (!modules) {
  console.error('BACKSTAGE_BACKEND_MODULES must name the node_modules folder the backend is installed in');
  process.exit(2);
}
const { createBackend } = require(path.join(modules, '@backstage/backend-defaults'));

const backend = createBackend();
backend.add(require(path.join(modules, '@backstage/plugin-kubernetes-backend')));
backend.start().catch(error => {
  console.error(error);
  process.exit(1);
});
