// Validates rendered Kubernetes manifests (multi-document YAML on stdin, e.g. from
// `kubectl kustomize`) offline: every object against its Kubernetes or Prometheus Operator
// schema, then the references between objects that only a running cluster would otherwise
// catch (selectors, the ConfigMap and claim a pod mounts, the HPA's target, probe ports).
// Usage: kubectl kustomize DIR | node validate-k8s.mjs [--provided Kind/name ...]
// --provided names an object the operator makes outside the manifests (e.g. a Secret of keys).
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const modelPackages = {
  "monitoring.coreos.com": "@kubernetes-models/prometheus-operator",
};

async function modelFor(apiVersion, kind) {
  const group = apiVersion.includes("/") ? apiVersion.split("/")[0] : "";
  const path = apiVersion.includes("/") ? apiVersion : `v1`;
  const pkg = modelPackages[group] ?? "kubernetes-models";
  const module = await import(`${pkg}/${path}/${kind}`).catch(() => null);
  return module?.[kind] ?? null;
}

const errors = [];
const fail = (object, message) => errors.push(`${object.kind}/${object.metadata?.name}: ${message}`);

const documents = parseAllDocuments(readFileSync(0, "utf8"));
const objects = [];
for (const document of documents) {
  if (document.errors.length > 0) {
    errors.push(`YAML: ${document.errors.map((e) => e.message).join("; ")}`);
    continue;
  }
  const object = document.toJS();
  if (object === null) continue;
  objects.push(object);
  const Model = await modelFor(object.apiVersion, object.kind);
  if (!Model) {
    fail(object, `no schema for ${object.apiVersion} ${object.kind}`);
    continue;
  }
  try {
    new Model(object).validate();
  } catch (e) {
    fail(object, e.message);
  }
}

const provided = process.argv.slice(2).filter((a, i, all) => all[i - 1] === "--provided");
const find = (kind, name) => provided.includes(`${kind}/${name}`) || objects.find((o) => o.kind === kind && o.metadata?.name === name);
const matches = (selector, labels) => Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);

for (const deployment of objects.filter((o) => o.kind === "Deployment")) {
  const pod = deployment.spec.template;
  if (!matches(deployment.spec.selector.matchLabels, pod.metadata?.labels)) fail(deployment, "selector does not match the pod labels");
  for (const volume of pod.spec.volumes ?? []) {
    if (volume.configMap && !find("ConfigMap", volume.configMap.name)) fail(deployment, `mounts ConfigMap ${volume.configMap.name}, which is not rendered`);
    if (volume.secret && !find("Secret", volume.secret.secretName)) fail(deployment, `mounts Secret ${volume.secret.secretName}, which is not rendered`);
    if (volume.persistentVolumeClaim && !find("PersistentVolumeClaim", volume.persistentVolumeClaim.claimName)) {
      fail(deployment, `mounts claim ${volume.persistentVolumeClaim.claimName}, which is not rendered`);
    }
  }
  for (const container of pod.spec.containers) {
    const ports = new Set((container.ports ?? []).flatMap((p) => [p.containerPort, p.name]));
    for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
      const port = container[probe]?.grpc?.port;
      if (container[probe] && !ports.has(port)) fail(deployment, `${container.name}.${probe} probes port ${port}, which the container does not declare`);
    }
    for (const mount of container.volumeMounts ?? []) {
      if (!(pod.spec.volumes ?? []).some((v) => v.name === mount.name)) fail(deployment, `${container.name} mounts volume ${mount.name}, which the pod lacks`);
    }
  }
  // The kubelet's SIGKILL must not cut a drain short: the preStop pause, then the server's
  // --shutdown-grace, then a few seconds for the engine to stop.
  const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
  for (const container of pod.spec.containers) {
    const args = container.args ?? [];
    const at = args.indexOf("--shutdown-grace");
    const shutdownGrace = at >= 0 ? Number(args[at + 1]) : 30;
    const command = container.lifecycle?.preStop?.exec?.command ?? [];
    const pause = command[0] === "sleep" ? Number(command[1]) : 0;
    const needed = pause + shutdownGrace + 5;
    if (!(grace >= needed)) fail(deployment, `terminationGracePeriodSeconds ${grace} is shorter than preStop ${pause} s + --shutdown-grace ${shutdownGrace} s + 5 s`);
  }
}
for (const service of objects.filter((o) => o.kind === "Service")) {
  const pods = objects.filter((o) => o.kind === "Deployment" && matches(service.spec.selector, o.spec.template.metadata?.labels));
  if (pods.length === 0) fail(service, "selects no Deployment's pods");
  for (const port of service.spec.ports) {
    const named = pods.some((d) => d.spec.template.spec.containers.some((c) => (c.ports ?? []).some((p) => p.name === port.targetPort || p.containerPort === port.targetPort)));
    if (!named) fail(service, `targetPort ${port.targetPort} is no container port`);
  }
}
for (const monitor of objects.filter((o) => o.kind === "ServiceMonitor")) {
  const services = objects.filter((o) => o.kind === "Service" && matches(monitor.spec.selector.matchLabels, o.metadata.labels));
  if (services.length === 0) fail(monitor, "selects no Service");
  for (const endpoint of monitor.spec.endpoints) {
    if (!services.some((s) => s.spec.ports.some((p) => p.name === endpoint.port))) fail(monitor, `port ${endpoint.port} is on no selected Service`);
  }
}
for (const hpa of objects.filter((o) => o.kind === "HorizontalPodAutoscaler")) {
  if (!find(hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name)) fail(hpa, `scales ${hpa.spec.scaleTargetRef.kind}/${hpa.spec.scaleTargetRef.name}, which is not rendered`);
}

if (errors.length > 0) {
  for (const e of errors) console.error(`invalid: ${e}`);
  process.exit(1);
}
console.log(`${objects.length} objects valid: ${objects.map((o) => o.kind).join(", ")}`);
