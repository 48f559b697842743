// @jupyterlab/services across a gateway restart (kgd with a kernel store).
//
// Why: with --kernel-store a gateway restart must be a non-event for
// JupyterLab: its kernel connection is closed with 1012, reconnects by itself
// with the same session, and the kernel still holds the user's variables.
//
// Input: env KGD_URL, KGD_TOKEN. Protocol with the test on stdout/stdin:
// prints {"phase":"ready","kernel_id":...} once `x = 42` ran, then waits for
// one line on stdin (the test restarts the gateway meanwhile), then runs
// print(x) on the same kernel connection and prints ONE JSON result; exit 0.
// Failures print {"error": ...} and exit 1; a hard deadline exits 2.

import WebSocket from 'ws';
import services from '@jupyterlab/services';

const { KernelManager, ServerConnection } = services;
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

const TIMEOUT_MS = Number(process.env.KGD_SCENARIO_TIMEOUT_MS || 120000);
const STEP_TIMEOUT_MS = 30000;

function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function execute(kernel, code) {
  let stream = '';
  const future = kernel.requestExecute({ code });
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') stream += msg.content.text;
  };
  const reply = await within(STEP_TIMEOUT_MS, `execute ${JSON.stringify(code)}`, future.done);
  return { status: reply.content.status, stream };
}

function oneLineFromStdin() {
  return new Promise((resolve) => {
    process.stdin.setEncoding('utf8');
    process.stdin.once('data', resolve);
  });
}

async function scenario(baseUrl, token) {
  const serverSettings = ServerConnection.makeSettings({
    baseUrl, wsUrl: 'ws' + baseUrl.slice('http'.length), token, appendToken: true,
    WebSocket, fetch, Request, Headers
  });
  const kernelManager = new KernelManager({ serverSettings });
  await within(STEP_TIMEOUT_MS, 'kernel manager ready', kernelManager.ready);
  const kernel = await within(STEP_TIMEOUT_MS, 'start kernel', kernelManager.startNew({ name: 'python3' }));
  await within(STEP_TIMEOUT_MS, 'kernel_info', kernel.info);
  const statuses = [];
  kernel.connectionStatusChanged.connect((_, status) => statuses.push(status));
  await execute(kernel, 'x = 42');
  process.stdout.write(JSON.stringify({ phase: 'ready', kernel_id: kernel.id }) + '\n');
  await oneLineFromStdin();
  const after = await execute(kernel, 'print(x)');
  const out = { kernel_id: kernel.id, after_restart: after, connection_statuses: statuses.slice() };
  await within(STEP_TIMEOUT_MS, 'shutdown', kernel.shutdown());
  kernelManager.dispose();
  return out;
}

const deadline = setTimeout(() => {
  process.stdout.write(JSON.stringify({ error: `scenario did not finish within ${TIMEOUT_MS} ms` }) + '\n');
  process.exit(2);
}, TIMEOUT_MS);

scenario(process.env.KGD_URL, process.env.KGD_TOKEN || '')
  .then((out) => {
    clearTimeout(deadline);
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
  })
  .catch((error) => {
    process.stdout.write(JSON.stringify({ error: String(error && error.stack || error) }) + '\n');
    process.exit(1);
  });
