// What the browser worker keeps on this device: models in IndexedDB, keyed by their SHA-256,
// so an unchanged model is never downloaded twice. Usable from the page and from a Web Worker.

const DB_NAME = "ccgsc-worker";
const STORE = "models";
const KEEP = 4;  // the newest few models are all a worker needs

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE);
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function run(mode, action) {
  return open().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const result = action(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(result.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  }));
}

export const modelCache = {
  async get(sha256) {
    if (typeof indexedDB === "undefined") return null;
    const entry = await run("readonly", (store) => store.get(sha256));
    return entry ? new Uint8Array(entry.bytes) : null;
  },
  async put(sha256, bytes) {
    if (typeof indexedDB === "undefined") return;
    await run("readwrite", (store) => store.put({ bytes, at: Date.now() }, sha256));
    const keys = await run("readonly", (store) => store.getAllKeys());
    if (keys.length > KEEP) {
      const entries = await Promise.all(keys.map(async (key) => [key,
        (await run("readonly", (store) => store.get(key))).at]));
      entries.sort((a, b) => a[1] - b[1]);
      for (const [key] of entries.slice(0, entries.length - KEEP)) {
        await run("readwrite", (store) => store.delete(key));
      }
    }
  },
};
