// Backstage's own Kubernetes frontend code, unmodified from npm, as the client of `kubeauth serve`:
// `KubernetesBackendClient` (@backstage/plugin-kubernetes-react) makes the call as Backstage's UI does, and
// `groupResponses` / `detectErrors` (@backstage/plugin-kubernetes-common) read the answer as the UI does.
// What they read is printed as JSON on stdout, for the test to check.
//
// Usage: node frontend.mjs <node peers folder> <base URL, …/api/kubernetes> <request JSON>
// The request: {call: "getObjectsByEntity" | "getWorkloadsByEntity" | "getCustomObjectsByEntity" | "getClusters"
// | "proxy" | "expectedPodMetrics", entity, auth, customResources, clusterName, path, namespace, labelSelector,
// tokens: {<provider>: token}}.
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [peers, baseUrl, requestJson] = process.argv.slice(2);
const modules = path.join(peers, 'backstage-kubernetes', 'node_modules', '@backstage');
const load = file => import(pathToFileURL(path.join(modules, file)).href);
const { KubernetesBackendClient } = await load('plugin-kubernetes-react/dist/api/KubernetesBackendClient.esm.js');
const { groupResponses, detectErrors } = await load('plugin-kubernetes-common/dist/index.esm.js');

const request = JSON.parse(requestJson);
const tokens = request.tokens ?? {};
const client = new KubernetesBackendClient({
  discoveryApi: { getBaseUrl: async () => baseUrl },
  fetchApi: { fetch },
  // The signed-in user's tokens, as Backstage's KubernetesAuthProviders hands them out per provider.
  kubernetesAuthProvidersApi: { getCredentials: async provider => ({ token: tokens[provider] }) },
});

const names = objects => objects.map(o => o.metadata?.name);
const summary = response => ({
  clusters: response.items.map(item => {
    const grouped = groupResponses(item.resources);
    return {
      name: item.cluster.name,
      pods: names(grouped.pods),
      deployments: names(grouped.deployments),
      services: names(grouped.services),
      configMaps: names(grouped.configMaps),
      customResources: grouped.customResources.map(o => ({ kind: o.kind, name: o.metadata?.name })),
      errors: item.errors,
      podMetrics: item.podMetrics,
    };
  }),
  detected: Object.fromEntries(
    [...detectErrors(response)].map(([cluster, errors]) => [cluster, errors.map(e => e.type)]),
  ),
});

const { call, entity, auth = {}, customResources } = request;
let out;
switch (call) {
  case 'getObjectsByEntity':
    out = summary(await client.getObjectsByEntity({ entity, auth }));
    break;
  case 'getWorkloadsByEntity':
    out = summary(await client.getWorkloadsByEntity({ entity, auth }));
    break;
  case 'getCustomObjectsByEntity':
    out = summary(await client.getCustomObjectsByEntity({ entity, auth, customResources }));
    break;
  case 'getClusters':
    out = await client.getClusters();
    break;
  case 'proxy': {
    const response = await client.proxy({ clusterName: request.clusterName, path: request.path, init: request.init });
    out = { status: response.status, body: await response.text() };
    break;
  }
  case 'expectedPodMetrics': {
    // What Backstage's backend computes for the same pods: @kubernetes/client-node's topPods over the pod and
    // PodMetrics lists (fetched here through the proxy), then its toClientSafePodMetrics.
    const { topPods } = await import(
      pathToFileURL(path.join(peers, 'backstage-kubernetes', 'node_modules', '@kubernetes', 'client-node', 'dist', 'top.js')).href
    );
    const query = `?labelSelector=${encodeURIComponent(request.labelSelector)}`;
    const get = async p => JSON.parse(await (await client.proxy({ clusterName: request.clusterName, path: p + query })).text());
    const podList = await get(`/api/v1/namespaces/${request.namespace}/pods`);
    const podMetrics = await get(`/apis/metrics.k8s.io/v1beta1/namespaces/${request.namespace}/pods`);
    const statuses = await topPods(
      { listPodForAllNamespaces: async () => podList },
      { getPodMetrics: async () => podMetrics },
    );
    const safe = v => (typeof v === 'bigint' ? v.toString() : v);
    const usage = r => ({ currentUsage: safe(r.CurrentUsage), requestTotal: safe(r.RequestTotal), limitTotal: safe(r.LimitTotal) });
    out = statuses.map(s => ({
      pod: s.Pod,
      memory: usage(s.Memory),
      cpu: usage(s.CPU),
      containers: s.Containers.map(c => ({ container: c.Container, cpuUsage: usage(c.CPUUsage), memoryUsage: usage(c.MemoryUsage) })),
    }));
    break;
  }
  default:
    throw new Error(`unknown call ${call}`);
}
process.stdout.write(JSON.stringify(out));
