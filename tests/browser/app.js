// The page's logic: plain fetch and WebSocket against kgd, as any web app would use it.
const params = new URLSearchParams(location.search);
const kgd = params.get("kgd");
const token = params.get("token");
const code = params.get("code") || "print('hello from the browser', 6 * 7)";
const headers = { Authorization: `token ${token}`, "Content-Type": "application/json" };
const $ = (id) => document.getElementById(id);

function status(text, kind) {
  $("status").textContent = text;
  $("status").className = kind || "";
}

async function listKernelspecs() {
  const response = await fetch(`${kgd}/api/kernelspecs`, { headers });
  if (!response.ok) throw new Error(`kernelspecs: HTTP ${response.status}`);
  const body = await response.json();
  for (const [name, spec] of Object.entries(body.kernelspecs)) {
    const item = document.createElement("li");
    item.textContent = `${name}: ${spec.spec.display_name}`;
    $("specs").append(item);
  }
  return body.default;
}

async function startKernel(name) {
  const response = await fetch(`${kgd}/api/kernels`, { method: "POST", headers, body: JSON.stringify({ name }) });
  if (response.status !== 201) throw new Error(`start kernel: HTTP ${response.status}`);
  const kernel = await response.json();
  $("kernel").textContent = `${kernel.name} ${kernel.id}`;
  return kernel;
}

function runCell(kernel) {
  const session = crypto.randomUUID();
  const url = `${kgd.replace(/^http/, "ws")}/api/kernels/${kernel.id}/channels?session_id=${session}&token=${encodeURIComponent(token)}`;
  const msgId = crypto.randomUUID();
  $("code").textContent = code;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let replied = false;
    let idle = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({
        channel: "shell",
        header: { msg_id: msgId, msg_type: "execute_request", session, username: "browser", version: "5.3", date: new Date().toISOString() },
        parent_header: {},
        metadata: {},
        content: { code, silent: false, store_history: true, user_expressions: {}, allow_stdin: false, stop_on_error: true },
        buffers: [],
      }));
    };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.parent_header.msg_id !== msgId) return;
      const type = msg.header.msg_type;
      if (type === "stream") $("output").textContent += msg.content.text;
      if (type === "execute_result") $("output").textContent += msg.content.data["text/plain"] + "\n";
      if (type === "error") $("output").textContent += `${msg.content.ename}: ${msg.content.evalue}\n`;
      if (type === "execute_reply") replied = true;
      if (type === "status" && msg.content.execution_state === "idle") idle = true;
      if (replied && idle) {
        ws.close();
        resolve();
      }
    };
    ws.onerror = () => reject(new Error("channels WebSocket failed"));
  });
}

async function main() {
  let name = null;
  try {
    name = await listKernelspecs();
  } catch (error) {
    $("specs").textContent = `could not list kernelspecs (${error.message})`;
  }
  let kernel;
  try {
    kernel = await startKernel(name);
  } catch (error) {
    status(`error: could not start a kernel (${error.message})`, "error");
    return;
  }
  try {
    await runCell(kernel);
    status("done", "done");
  } catch (error) {
    status(`error: ${error.message}`, "error");
  } finally {
    await fetch(`${kgd}/api/kernels/${kernel.id}`, { method: "DELETE", headers }).catch(() => {});
  }
}

main();
