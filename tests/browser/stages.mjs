// What both browser scripts (e2e.mjs, admin.mjs) share: their command
// line, and running a test as named stages that each print one JSON line
// on stdout (with a screenshot), so the Rust side can say which stage
// failed and why.

import path from 'node:path';

/** A failed expectation, with what the page showed. */
export class StageError extends Error {
  constructor(message, details) {
    super(message);
    this.details = details;
  }
}

export function check(condition, message, details) {
  if (!condition) throw new StageError(message, details);
}

/** `--name value` and `--name=value` pairs; anything else is a usage error. */
export function parseArgs(argv, usage) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    if (!m) usage(`unexpected argument ${arg}`);
    const value = m[2] ?? argv[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    opts[m[1]] = value;
  }
  return opts;
}

/**
 * Numbered screenshots in `dir` (`<prefix>NN-<name>.png`) and a stage
 * runner: `stage(name, page, body)` runs `body(line)`, merges what it
 * returns into the stage's line, prints the line, and on failure adds a
 * `-FAILED` screenshot and throws. With `shotEachStage`, every stage that
 * passes gets a screenshot too.
 */
export function stageRunner({ dir, prefix = '', fullPage = false, shotEachStage = false }) {
  const stages = [];
  let shot = 0;

  async function screenshot(page, name) {
    shot += 1;
    const file = path.join(dir, `${prefix}${String(shot).padStart(2, '0')}-${name}.png`);
    await page.screenshot({ path: file, fullPage });
    return file;
  }

  async function stage(name, page, body) {
    const t0 = Date.now();
    const line = { stage: name, ok: false };
    try {
      Object.assign(line, (await body(line)) ?? {});
      if (shotEachStage) line.screenshot = await screenshot(page(), name);
      line.ok = true;
    } catch (error) {
      line.error = error.message;
      if (error.details !== undefined) line.details = error.details;
      try {
        line.screenshot = await screenshot(page(), `${name}-FAILED`);
      } catch (shotError) {
        line.screenshot_error = shotError.message;
      }
    }
    line.ms = Date.now() - t0;
    stages.push(line);
    console.log(JSON.stringify(line));
    if (!line.ok) throw new StageError(`stage ${name} failed: ${line.error}`);
    return line;
  }

  return { stages, screenshot, stage };
}
