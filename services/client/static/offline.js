// offline.js — what the device client keeps in IndexedDB for one signed-in user
// (docs/devices.md, Offline): the latest value of each watched (topic, selector), the queue
// of actions not yet applied, and the actions settled since. One database per user, so that
// nothing one user kept is shown to another; mesh.js deletes the topics on sign-out.

const VERSION = 1;
// when a topic was last used: fractional milliseconds, so that two uses within one differ
const now = () => performance.timeOrigin + performance.now();

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function finished(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

export class OfflineStore {
  #db;

  constructor(db) { this.#db = db; }

  static name(prefix, user) { return `${prefix}:${user}`; }

  /** The store of `user`, made on first use; null where the browser has no IndexedDB. */
  static async open(prefix, user) {
    if (!globalThis.indexedDB) return null;
    const opening = indexedDB.open(OfflineStore.name(prefix, user), VERSION);
    opening.onupgradeneeded = () => {
      const db = opening.result;
      db.createObjectStore("topics", {keyPath: "key"}).createIndex("used", "used");
      db.createObjectStore("queue", {keyPath: "seq", autoIncrement: true});
      db.createObjectStore("settled", {keyPath: "actionId"});
    };
    return new OfflineStore(await request(opening));
  }

  close() { this.#db.close(); }

  async #run(names, mode, work) {
    const tx = this.#db.transaction(names, mode);
    const result = await work(tx);
    await finished(tx);
    return result;
  }

  // topics: {key, payload, version, at (ms it arrived), used (ms it was last shown)}
  topic(key) {
    return this.#run(["topics"], "readwrite", async (tx) => {
      const store = tx.objectStore("topics");
      const found = await request(store.get(key));
      if (found) store.put({...found, used: now()});
      return found ?? null;
    });
  }

  /** Keep a topic's value; past `limit` values, the least recently used go. */
  keepTopic(entry, limit) {
    return this.#run(["topics"], "readwrite", async (tx) => {
      const store = tx.objectStore("topics");
      store.put({...entry, used: now()});
      let over = (await request(store.count())) - limit;
      if (over <= 0) return;
      const cursor = store.index("used").openCursor();
      await new Promise((resolve, reject) => {
        cursor.onerror = () => reject(cursor.error);
        cursor.onsuccess = () => {
          const at = cursor.result;
          if (!at || over-- <= 0) return resolve();
          at.delete();
          at.continue();
        };
      });
    });
  }

  clearTopics() {
    return this.#run(["topics"], "readwrite", async (tx) => { tx.objectStore("topics").clear(); });
  }

  // the queue, in the order the actions were taken: {seq, actionId, action, payload, ...}
  queued() {
    return this.#run(["queue"], "readonly", (tx) => request(tx.objectStore("queue").getAll()));
  }

  /** Queue `entry`, unless `limit` are queued already (then false). */
  enqueue(entry, limit) {
    return this.#run(["queue"], "readwrite", async (tx) => {
      const store = tx.objectStore("queue");
      if ((await request(store.count())) >= limit) return false;
      store.add(entry);
      return true;
    });
  }

  /** Take the action out of the queue; with an outcome, keep it among the settled. */
  settle(entry, outcome) {
    return this.#run(["queue", "settled"], "readwrite", async (tx) => {
      tx.objectStore("queue").delete(entry.seq);
      if (outcome) tx.objectStore("settled").put({...entry, ...outcome, settledAt: Date.now()});
    });
  }

  settled() {
    return this.#run(["settled"], "readonly", (tx) => request(tx.objectStore("settled").getAll()));
  }

  forgetSettled(actionId) {
    return this.#run(["settled"], "readwrite", async (tx) => {
      tx.objectStore("settled").delete(actionId);
    });
  }
}
