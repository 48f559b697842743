// JupyterLab-as-a-client scenario for a Jupyter kernel gateway.
//
// Why: JupyterLab (and anything else built on @jupyterlab/services) is the most
// common real client of a kernel gateway, and it has its own habits on the wire
// (cache-busting query strings, the token in the WebSocket URL, a session_id per
// connection, the v1 kernel WebSocket subprotocol, polling GET /api/kernels).
// Driving the real library, not a re-implementation of it, is the only way to
// know that a gateway works with it.
//
// Input: env KGD_URL (http://host:port[/base/]) and KGD_TOKEN (may be empty).
// Output: ONE JSON object on stdout describing what was observed; exit 0.
// Any failure prints {"error": ...} on stdout, details on stderr, and exits 1.
// A hard deadline (KGD_SCENARIO_TIMEOUT_MS, default 60000) exits 2.

import WebSocket from 'ws';
import services from '@jupyterlab/services';

const { KernelAPI, KernelManager, KernelSpecManager, ServerConnection } = services;

// The library logs with console.debug/log, which Node writes to stdout; stdout
// is reserved for the one JSON result, so all console output goes to stderr.
globalThis.console = new console.Console({ stdout: process.stderr, stderr: process.stderr });

const TIMEOUT_MS = Number(process.env.KGD_SCENARIO_TIMEOUT_MS || 60000);
const STEP_TIMEOUT_MS = 20000;

/** Everything the client sent, with the token redacted, for the report. */
const wire = { http: [], websockets: [] };

function redact(url, token) {
  return token ? url.split(encodeURIComponent(token)).join('<token>') : url;
}

function fail(code, message) {
  process.stdout.write(JSON.stringify({ error: message, wire }) + '\n');
  process.exit(code);
}

/** Reject if `promise` does not settle within `ms`, naming the step. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Execute `code` and collect what the kernel said about it.
 * `stdinValue`, when given, answers the first input_request.
 */
async function execute(kernel, code, stdinValue) {
  const observed = { status: null, stream: '', result: null, prompt: null, error: null };
  const future = kernel.requestExecute({ code, allow_stdin: stdinValue !== undefined });
  future.onIOPub = (msg) => {
    const type = msg.header.msg_type;
    if (type === 'stream') {
      observed.stream += msg.content.text;
    } else if (type === 'execute_result') {
      observed.result = msg.content.data['text/plain'];
    } else if (type === 'error') {
      observed.error = `${msg.content.ename}: ${msg.content.evalue}`;
    }
  };
  future.onStdin = (msg) => {
    if (msg.header.msg_type === 'input_request' && stdinValue !== undefined) {
      observed.prompt = msg.content.prompt;
      kernel.sendInputReply({ status: 'ok', value: stdinValue }, msg.header);
    }
  };
  const reply = await within(STEP_TIMEOUT_MS, `execute ${JSON.stringify(code)}`, future.done);
  observed.status = reply.content.status;
  return observed;
}

async function scenario(baseUrl, token) {
  const wsUrl = 'ws' + baseUrl.slice('http'.length);

  class RecordingWebSocket extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      const entry = { url: redact(url, token), offered: protocols, selected: null };
      wire.websockets.push(entry);
      this.on('open', () => {
        entry.selected = this.protocol;
      });
    }
  }

  const recordingFetch = async (request) => {
    const entry = {
      method: request.method,
      url: redact(request.url, token),
      authorization: request.headers.has('Authorization') ? 'token <token>' : null,
      contentType: request.headers.get('Content-Type'),
      status: null
    };
    wire.http.push(entry);
    const response = await fetch(request);
    entry.status = response.status;
    return response;
  };

  const serverSettings = ServerConnection.makeSettings({
    baseUrl,
    wsUrl,
    token,
    // Node has no page, so the library appends the token to WebSocket URLs by
    // default; say so explicitly since a browser on another origin does the same.
    appendToken: true,
    WebSocket: RecordingWebSocket,
    fetch: recordingFetch,
    Request,
    Headers
  });

  const out = {};
  const specManager = new KernelSpecManager({ serverSettings });
  const kernelManager = new KernelManager({ serverSettings });
  try {
    await within(STEP_TIMEOUT_MS, 'kernelspec manager ready', specManager.ready);
    // The manager swallows request errors and just leaves `specs` null.
    if (!specManager.specs) {
      throw new Error('no kernelspecs: GET /api/kernelspecs failed (see wire)');
    }
    out.default_kernelspec = specManager.specs.default;
    out.kernelspecs = Object.keys(specManager.specs.kernelspecs).sort();

    await within(STEP_TIMEOUT_MS, 'kernel manager ready', kernelManager.ready);
    const kernel = await within(
      STEP_TIMEOUT_MS,
      'start python3 kernel',
      kernelManager.startNew({ name: 'python3' })
    );
    out.kernel_name = kernel.name;
    const info = await within(STEP_TIMEOUT_MS, 'kernel_info', kernel.info);
    out.language = info.language_info.name;

    const hello = await execute(kernel, "print('hello from jlab')");
    out.stream = hello.stream;

    const asked = await execute(kernel, "input('name? ')", 'kgd');
    out.input_prompt = asked.prompt;
    out.input_echo = asked.result;

    await execute(kernel, 'kgd_marker = 1');
    const sum = await execute(kernel, '1+1');
    out.result = sum.result;

    await within(STEP_TIMEOUT_MS, 'restart', kernel.restart());
    const again = await execute(kernel, "print('kgd_marker' in globals(), 6*7)");
    out.after_restart = { status: again.status, stream: again.stream };

    const id = kernel.id;
    await within(STEP_TIMEOUT_MS, 'shutdown', kernel.shutdown());
    const model = await within(
      STEP_TIMEOUT_MS,
      'get model after shutdown',
      KernelAPI.getKernelModel(id, serverSettings)
    );
    out.shutdown = model === undefined;
  } finally {
    kernelManager.dispose();
    specManager.dispose();
  }
  out.wire = wire;
  return out;
}

const baseUrl = process.env.KGD_URL;
if (!baseUrl || !/^https?:\/\//.test(baseUrl)) {
  fail(1, 'KGD_URL must be set to the gateway http(s) URL');
}
// Not unref'd: it also keeps Node alive while the library waits on sockets.
setTimeout(() => fail(2, `scenario exceeded ${TIMEOUT_MS} ms`), TIMEOUT_MS);

scenario(baseUrl, process.env.KGD_TOKEN || '').then(
  (out) => {
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
  },
  (err) => {
    console.error(err);
    fail(1, String(err && err.message ? err.message : err));
  }
);
