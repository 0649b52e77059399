// Checks the Grafana dashboard against a real Prometheus that scrapes a real server: every
// panel's query (with the dashboard's variables set to "all") evaluates without error, names
// only metrics the server registers (server/metrics.cc), and returns data wherever the server
// has exported the series it reads.
// Usage: node check-dashboard.mjs DASHBOARD.json PROMETHEUS_URL server/metrics.cc
import { readFileSync } from "node:fs";

const [dashboardPath, prometheus, metricsSource] = process.argv.slice(2);
const dashboard = JSON.parse(readFileSync(dashboardPath, "utf8"));
const registered = new Set([...readFileSync(metricsSource, "utf8").matchAll(/Name\("([a-z_]+)"\)/g)].map((m) => m[1]));

async function query(expr) {
  const response = await fetch(`${prometheus}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return response.json();
}
const exported = new Set((await (await fetch(`${prometheus}/api/v1/label/__name__/values`)).json()).data);

const errors = [];
let answered = 0;
let targets = 0;
for (const panel of dashboard.panels) {
  for (const target of panel.targets) {
    ++targets;
    const expr = target.expr.replaceAll("$__rate_interval", "1m").replace(/\$(bits|tenant)\b/g, ".*");
    const names = [...expr.matchAll(/\b(anyprec_[a-z_]+)/g)].map((m) => m[1]);
    for (const name of names) {
      if (!registered.has(name.replace(/_(bucket|sum|count)$/, ""))) errors.push(`${panel.title}: ${name} is no metric of the server`);
    }
    const result = await query(expr);
    if (result.status !== "success") {
      errors.push(`${panel.title}: ${expr}: ${result.error}`);
    } else if (names.every((n) => exported.has(n))) {
      if (result.data.result.length === 0) errors.push(`${panel.title}: ${expr}: no data although the server exports ${names.join(", ")}`);
      else ++answered;
    }
  }
}
if (errors.length > 0) {
  for (const e of errors) console.error(`dashboard: ${e}`);
  process.exit(1);
}
console.log(`dashboard: ${targets} queries evaluate; ${answered} returned data (the rest read series no request has made yet)`);
