// Validate the Prometheus Operator objects (ServiceMonitor, PrometheusRule) in rendered manifests
// against the operator's CRD schemas, as kubernetes-validate does for the built-in kinds.
// Usage: node crd-validate.mjs rendered.yaml...   Exit 1 on an invalid object or an unknown kind.
import { readFileSync } from "node:fs";
import YAML from "yaml";
// The package's compiled validators of the operator's CRD OpenAPI schemas (types, required fields,
// enums, patterns). Imported by file: the package does not export them, and its models' own
// validate() does not report errors.
const schemas = "./node_modules/@kubernetes-models/prometheus-operator/_schemas/ComGithubPrometheusOperatorPrometheusOperatorPkgApisMonitoringV1";
const { validate: prometheusRule } = await import(`${schemas}PrometheusRule.js`);
const { validate: serviceMonitor } = await import(`${schemas}ServiceMonitor.js`);
const { validate: podMonitor } = await import(`${schemas}PodMonitor.js`);
const validators = {
  "monitoring.coreos.com/v1/PrometheusRule": prometheusRule,
  "monitoring.coreos.com/v1/ServiceMonitor": serviceMonitor,
  "monitoring.coreos.com/v1/PodMonitor": podMonitor,
};
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of YAML.parseAllDocuments(readFileSync(file, "utf8"))) {
    const object = doc.toJS();
    if (!object || !object.apiVersion || object.apiVersion.split("/").length < 2 || !object.apiVersion.includes(".")) continue;
    if (object.apiVersion.endsWith(".k8s.io/v1") || object.apiVersion.endsWith(".k8s.io/v2")) continue; // built-in groups: kubernetes-validate
    const key = `${object.apiVersion}/${object.kind}`;
    const validate = validators[key];
    const name = `${file}: ${object.kind}/${object.metadata?.name}`;
    if (!validate) {
      console.error(`FAIL ${name}: no schema for ${key}`);
      failed++;
      continue;
    }
    if (validate(object)) {
      console.log(`ok   ${name}`);
    } else {
      for (const error of validate.errors) console.error(`FAIL ${name}: ${error.instancePath} ${error.keyword} ${JSON.stringify(error.params)}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
