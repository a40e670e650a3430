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

/** What lets the shell open after a browser restart with no network: the signed-in identity,
 * the last catalogs and the session token, kept in IndexedDB (`<prefix>-device`) until
 * sign-out or until the gateway refuses the token. The token is sealed with an AES-GCM key
 * the browser will not export (a non-extractable CryptoKey kept beside it): it is not in
 * plain text where a copy of localStorage or a glance at the storage shows it, but any script
 * of the page's origin can still use it (docs/devices.md, "Kept on the device"). */
export class DeviceKeep {
  #db;
  #queue = Promise.resolve(); // saves and clears, in the order they were asked for

  constructor(db) { this.#db = db; }

  /** Null where the browser has no IndexedDB or no WebCrypto (not a secure context). */
  static async open(prefix) {
    if (!globalThis.indexedDB || !globalThis.crypto?.subtle) return null;
    const opening = indexedDB.open(`${prefix}-device`, 1);
    opening.onupgradeneeded = () => opening.result.createObjectStore("kept");
    return new DeviceKeep(await request(opening));
  }

  #get(name) {
    const tx = this.#db.transaction(["kept"], "readonly");
    return request(tx.objectStore("kept").get(name));
  }

  #write(work) {
    const tx = this.#db.transaction(["kept"], "readwrite");
    work(tx.objectStore("kept"));
    return finished(tx);
  }

  /** The kept session, {token, entries}, or null (none, or its key is gone). */
  async load() {
    await this.#queue;
    const [sealed, key] = [await this.#get("session"), await this.#get("key")];
    if (!sealed || !key) return null;
    try {
      const plain = await crypto.subtle.decrypt({name: "AES-GCM", iv: sealed.iv}, key, sealed.data);
      return {token: new TextDecoder().decode(plain), entries: sealed.entries};
    } catch {
      return null;
    }
  }

  /** Keep `token` (sealed) and `entries` (the identity, the catalogs: not secret). */
  save(token, entries) {
    this.#queue = this.#queue.then(async () => {
      let key = await this.#get("key");
      if (!key) {
        key = await crypto.subtle.generateKey({name: "AES-GCM", length: 256}, false,
                                              ["encrypt", "decrypt"]);
        await this.#write((store) => store.put(key, "key"));
      }
      const iv = crypto.getRandomValues(new Uint8Array(12));
      const data = await crypto.subtle.encrypt({name: "AES-GCM", iv}, key,
                                               new TextEncoder().encode(token));
      await this.#write((store) => store.put({iv, data, entries}, "session"));
    }).catch((error) => console.warn("mesh: cannot keep the session", error));
    return this.#queue;
  }

  /** Forget the session and its key (a copy of the sealed token made earlier opens no more). */
  clear() {
    this.#queue = this.#queue.then(() => this.#write((store) => store.clear()))
      .catch((error) => console.warn("mesh: cannot forget the session", error));
    return this.#queue;
  }
}
