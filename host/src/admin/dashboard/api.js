// The dashboard's calls to /admin/api and its message area.
//
// Every call goes through `call`, which throws an Error carrying the API's
// own error text (`{"error": …}`) or the start of the body and the status;
// `act` runs an operator action and puts its outcome, success or refusal,
// in the message area. Nothing is swallowed.

const MAX_MESSAGES = 8;
const OK_FOR_MS = 30000; // successes fade; errors stay until dismissed

export class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

// One request; resolves to the parsed JSON (or null), throws ApiError.
export async function call(method, path, body, contentType) {
  const init = { method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof ArrayBuffer) {
      init.body = body;
      init.headers['content-type'] = contentType ?? 'application/octet-stream';
    } else {
      init.body = JSON.stringify(body);
      init.headers['content-type'] = 'application/json';
    }
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    throw new ApiError(`${method} ${path}: the host did not answer (${error.message})`, 0, null);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: the text is the message.
  }
  if (!response.ok) {
    const html = text.trimStart().startsWith('<');
    const said = typeof json?.error === 'string' ? json.error : json?.error?.message ?? (html ? '' : text.trim().slice(0, 300));
    const reason = said || response.statusText || 'no reason given';
    throw new ApiError(`HTTP ${response.status}: ${reason}`, response.status, json);
  }
  return json;
}

// A message in the visible message area; `kind` is info, ok or error.
export function say(kind, text) {
  const area = document.getElementById('messages');
  const item = document.createElement('div');
  item.className = `message ${kind}`;
  item.dataset.test = 'message';
  item.dataset.kind = kind;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  const body = document.createElement('span');
  body.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'close';
  close.title = 'Dismiss';
  close.textContent = '×';
  close.addEventListener('click', () => item.remove());
  item.append(time, body, close);
  area.prepend(item);
  if (kind !== 'error') setTimeout(() => item.remove(), OK_FOR_MS);
  while (area.children.length > MAX_MESSAGES) area.lastElementChild.remove();
  if (kind === 'error') console.warn(text);
  return item;
}

// Runs an operator action named `what`; says how it went (`describe` turns
// the answer into words); returns the answer or null when it was refused.
export async function act(what, run, describe) {
  try {
    const answer = await run();
    say('ok', `${what}: ${(describe && describe(answer)) || 'done'}`);
    return answer;
  } catch (error) {
    say('error', `${what}: ${error.message}`);
    return null;
  }
}
