// A node-soap client (npm package `soap`) of the bssbus services
// (tests/e2e/clients/test_node_client.py).
//
// Usage: NODE_PATH=tests/e2e/clients/node/node_modules node bss_client.js BUS_URL PLAN.tsv
// Each plan line is "id<TAB>Service<TAB>Operation<TAB>request.json<TAB>(unused)"; request.json
// holds the request wrapper's children (UNI_BSS_HEAD, UNI_BSS_BODY) as in wsdl/examples/.
// The client is created from BUS_URL/ws/<Service>?wsdl (and its ?xsd= imports); each call goes
// through the service's SOAP 1.1 port, client.<Service>.<Service>Soap11.<Operation> (node-soap's
// shortcut client.<Operation> is the last port's: the SOAP 1.2 one), to the soap:address that
// port names. One JSON line per call: {"id", "ok": true, "result"} or {"id", "ok": false, "error"}.
'use strict';

const fs = require('fs');
const soap = require('soap');

// Call one operation of a port: node-soap's port methods take a callback.
function call(port, operation, args) {
  if (!port || typeof port[operation] !== 'function') {
    return Promise.reject(new Error(`the SOAP 1.1 port has no operation ${operation}`));
  }
  return new Promise((resolve, reject) => {
    port[operation](args, (err, result) => (err ? reject(err) : resolve(result)), { timeout: 30000 });
  });
}

async function main() {
  const [bus, planFile] = process.argv.slice(2);
  if (!bus || !planFile) {
    process.stderr.write('usage: node bss_client.js BUS_URL PLAN.tsv\n');
    process.exit(2);
  }
  const clients = {};
  const lines = fs.readFileSync(planFile, 'utf8').split('\n').filter((l) => l.length > 0);
  for (const line of lines) {
    const [id, service, operation, requestFile] = line.split('\t');
    let out;
    try {
      if (!clients[service]) {
        clients[service] = await soap.createClientAsync(`${bus}/ws/${service}?wsdl`, {
          disableCache: true,
          wsdl_options: { timeout: 30000 },
        });
      }
      const args = JSON.parse(fs.readFileSync(requestFile, 'utf8'));
      const answer = await call(clients[service][service][`${service}Soap11`], operation, args);
      out = { id, ok: true, result: answer[`${operation}Result`] };
    } catch (err) {
      const body = err && err.body ? ` | response: ${err.body}` : '';
      out = { id, ok: false, error: `${err && err.stack ? err.stack : err}${body}` };
    }
    process.stdout.write(JSON.stringify(out) + '\n');
  }
}

main().catch((err) => {
  process.stderr.write(`${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
