// Building the dashboard's elements, and updating what is on the page in
// place from a freshly built copy.
//
// Why in place: a panel redrawn from scratch replaces every button and
// select in it, so a press that began on the old button (mouse down) ends
// on a new one (mouse up) and the browser fires no click; during a burst of
// submits the queue changed several times a second and every Cancel was
// lost. `morphChildren` keeps each element that is still wanted, changes
// only the text and attributes that differ, and moves, inserts or removes
// an element only when the wanted order says so. Elements carrying
// `data-key` are matched by key wherever they are (a job's row, a row's
// Cancel button), so a row never turns into another row and a Cancel
// button never turns into a Retry button under the pointer.

// h('td', {class: 'x', dataset: {test: 'y'}}, 'text', child, …)
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'class') el.className = value;
    else if (key in el && typeof value !== 'string') el[key] = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const keyOf = (node) => (node.nodeType === Node.ELEMENT_NODE ? node.getAttribute('data-key') : null);

const sameKind = (a, b) => a.nodeType === b.nodeType && a.nodeName === b.nodeName;

function morphAttributes(el, next) {
  for (const { name } of [...el.attributes]) {
    if (!next.hasAttribute(name)) el.removeAttribute(name);
  }
  for (const { name, value } of next.attributes) {
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }
}

// Makes `el` look like `next` (same node kind), keeping `el` and every
// child that is still wanted.
export function morph(el, next) {
  if (el.nodeType === Node.TEXT_NODE) {
    if (el.data !== next.data) el.data = next.data;
    return;
  }
  morphAttributes(el, next);
  morphChildren(el, next);
  // Properties that are not attributes: what a select shows (never while
  // the operator is choosing in it), whether a box is ticked.
  if (el instanceof HTMLSelectElement) {
    if (document.activeElement !== el && el.value !== next.value) el.value = next.value;
  } else if (el instanceof HTMLInputElement && document.activeElement !== el) {
    if (el.value !== next.value) el.value = next.value;
    if (el.checked !== next.checked) el.checked = next.checked;
  }
  // (An option's `selected` is left alone: the select's value above says
  // which one shows, and only when nobody is choosing.)
}

// Makes `parent`'s children look like `next`'s children (see the top).
export function morphChildren(parent, next) {
  const keyed = new Map();
  for (const child of parent.childNodes) {
    const key = keyOf(child);
    if (key !== null) keyed.set(key, child);
  }
  let cursor = parent.firstChild;
  for (const want of [...next.childNodes]) {
    const key = keyOf(want);
    let match = null;
    if (key !== null) {
      match = keyed.get(key) ?? null;
      if (match && !sameKind(match, want)) match = null;
    } else if (cursor && keyOf(cursor) === null && sameKind(cursor, want)) {
      match = cursor;
    }
    if (match === null) {
      parent.insertBefore(want, cursor);
      continue;
    }
    if (key !== null) keyed.delete(key);
    if (match === cursor) cursor = cursor.nextSibling;
    else parent.insertBefore(match, cursor); // moved only when out of order
    morph(match, want);
  }
  while (cursor) {
    const rest = cursor.nextSibling;
    cursor.remove();
    cursor = rest;
  }
}
