// mesh.js — the device client of the mesh client service (docs/devices.md).
// A plain ES module, no build step:  import { Mesh } from "/mesh.js";
//
//   const mesh = new Mesh();                                  // ws(s)://<this host>/ws
//   const me = await mesh.signIn("ada", "her password");      // {user, permissions, expiresAt}
//   const stop = mesh.subscribe("tutorial.string_ints", {}, (payload, version) => {...});
//   const row = await mesh.action("tutorial.add_int_value", {string_int_id: 1, offset: 1});
//   const reply = await mesh.call("tutorial.add_string_int", {string1: "a", int1: 1});
//   mesh.onNotification((n) => ...);  const {items, unread} = await mesh.notifications();
//
// It reconnects by itself (with backoff), signs in again with its token and subscribes again
// to everything it watched. The token is kept in sessionStorage (options.storage) so a reload
// stays signed in, and on the device (IndexedDB, sealed; options.keepOnDevice) so that a
// browser restart does too, offline as well, until sign-out or the gateway refuses it.
// Failed requests reject with a MeshError carrying the gateway's code, message and details
// ("unauthenticated", "forbidden" with details.permission, ...).
//
// Offline (docs/devices.md, Offline): the latest value of each watched selector is kept in
// IndexedDB for the signed-in user and shown at once on the next load, marked stale until the
// gateway confirms it; actions pushed with {offline: true} are queued there and replayed in
// order, one at a time, each applied exactly once (its action id).

import { DeviceKeep, OfflineStore } from "/offline.js";

export class MeshError extends Error {
  constructor(code, message, details = null) {
    super(`${code}: ${message}`);
    this.name = "MeshError";
    this.code = code;
    this.details = details;
  }
}

// Errors after which a queued action leaves the queue for good; any other ("disconnected",
// "timeout", "unavailable", "internal", "unauthenticated") is retried. A plugin's own codes
// ("tutorial.not_found") are final too.
export const FINAL_ERRORS = new Set(["forbidden", "invalid_action", "unknown_action", "expired",
  "conflict", "already_applied", "bad_frame", "frame_too_large", "cancelled"]);

export function isFinal(code) { return FINAL_ERRORS.has(code) || code.includes("."); }

function defaultUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

export class Mesh {
  #url;
  #options;
  #socket = null;
  #nextId = 1;
  #pending = new Map(); // request id -> {resolve, reject, timer}
  // subscription id -> {topic, selector, onValue, onError, version, sent}; `sent` while the
  // gateway has it (or may have it): it is sent again only when it is not
  #subscriptions = new Map();
  #backoff;
  #closed = false;
  #statusListeners = new Set();
  #identityListeners = new Set();
  #catalogListeners = new Set();
  #actionListeners = new Set();
  #store = Promise.resolve(null); // the signed-in user's OfflineStore (or null)
  #ready; // the kept session read (the constructor's work that may wait)
  #storeUser = null;
  #waiting = new Map(); // action id -> {resolve, reject}: queued actions of this page
  #draining = false;
  #sending = null; // the action id being pushed now
  #sendingElsewhere = null; // ... by another tab of this user
  #persisted = false;
  #offlineActions = new Set(); // actions the catalog says to queue while offline
  #pushListeners = {notification: new Set(), personal_settings: new Set()};
  #device = null; // the DeviceKeep: the session kept across browser restarts
  #tabs = null; // BroadcastChannel to this user's other tabs: what their replay settled
  status = "connecting";
  restoring = true; // until the session kept on the device (if any) is read
  identity = null; // {user, displayName, permissions, expiresAt} once signed in

  constructor(url = defaultUrl(), options = {}) {
    this.#url = url;
    this.#options = {minBackoff: 250, maxBackoff: 5000, timeout: 15000,
                     storage: globalThis.sessionStorage ?? null, tokenKey: "mesh-token",
                     offlinePrefix: "mesh-offline", cacheLimit: 200, queueLimit: 500,
                     keepOnDevice: true, ...options};
    this.#backoff = this.#options.minBackoff;
    this.#ready = this.#restore().catch((error) => console.warn("mesh: no kept session", error)).finally(() => {
      this.restoring = false;
      this.#offlineActions = new Set(JSON.parse(
        this.#options.storage?.getItem(`${this.#options.tokenKey}-offline-actions`) ?? "[]"));
      const kept = this.#token && this.#options.storage?.getItem(`${this.#options.tokenKey}-identity`);
      if (kept) { // shown until the gateway confirms (or refuses) the token, offline too
        this.identity = {...JSON.parse(kept), confirmed: false};
        this.#useStore(this.identity.user);
        for (const listener of this.#identityListeners) listener(this.identity);
      }
      if (!this.#closed) this.#connect();
    });
  }

  /** A tab with no session of its own takes the one kept on the device (a browser restart):
   * unless it expired by now, it is put in the tab's storage as if the tab had signed in. */
  async #restore() {
    const storage = this.#options.storage;
    if (!this.#options.keepOnDevice || !storage) return;
    this.#device = await DeviceKeep.open(this.#options.offlinePrefix);
    if (!this.#device || this.#token) return;
    const kept = await this.#device.load();
    if (!kept) return;
    const identity = JSON.parse(kept.entries[`${this.#options.tokenKey}-identity`] ?? "null");
    if (!identity || (identity.expiresAt && identity.expiresAt * 1000 <= Date.now())) {
      await this.#device.clear(); // over: sign in again (the queue stays, per user)
      return;
    }
    for (const [key, value] of Object.entries(kept.entries)) storage.setItem(key, value);
    storage.setItem(this.#options.tokenKey, kept.token);
  }

  /** Keep the tab's session on the device too (after a sign-in, a new catalog). */
  #keep() {
    const storage = this.#options.storage;
    const token = this.#token;
    if (!this.#device || !token) return;
    const prefix = `${this.#options.tokenKey}-`;
    const entries = {};
    for (let i = 0; i < storage.length; i++) {
      const key = storage.key(i);
      if (key.startsWith(prefix)) entries[key] = storage.getItem(key);
    }
    this.#device.save(token, entries);
  }

  /** Sign in with a username and password; resolves with the identity, rejects with a
   * MeshError ("unauthenticated": wrong username or password). */
  async signIn(username, password, {lifetime} = {}) {
    const frame = {type: "sign_in", username, password};
    if (lifetime) frame.lifetime_s = lifetime;
    const answer = await this.#request(frame);
    this.#options.storage?.setItem(this.#options.tokenKey, answer.token);
    return this.#signedIn(answer);
  }

  /** Sign out: the token stops working everywhere, every subscription ends. */
  async signOut() {
    try { await this.#request({type: "sign_out"}); } finally {
      const store = await this.#opened(); // the cached topics go; queued actions stay for later
      await store?.clearTopics();
      this.#forget("signed out");
    }
  }

  /** Be told of the identity (null when signed out, with the reason: expired, revoked, ...). */
  onIdentity(listener) {
    this.#identityListeners.add(listener);
    listener(this.identity);
    return () => this.#identityListeners.delete(listener);
  }

  /** The topics, actions, RPCs and screens this device may use; screen titles in `locale`
   * (a language tag, or several comma-separated, best first) where the plugin has them. */
  async catalog({locale} = {}) {
    const frame = {type: "catalog"};
    if (locale) frame.locale = locale;
    const key = `${this.#options.tokenKey}-catalog:${locale ?? ""}`;
    try {
      const {topics, actions, rpcs, screens = [], offline_actions: offline = []} =
        await this.#request(frame);
      const catalog = {topics, actions, rpcs, screens, offlineActions: offline};
      this.#offlineActions = new Set(offline);
      this.#options.storage?.setItem(key, JSON.stringify(catalog));
      this.#options.storage?.setItem(`${this.#options.tokenKey}-offline-actions`,
                                     JSON.stringify(offline));
      this.#keep();
      return catalog;
    } catch (error) { // offline: the last one this tab got
      const kept = error.code === "disconnected" && this.#options.storage?.getItem(key);
      if (kept) return JSON.parse(kept);
      throw error;
    }
  }

  /** Be told when what this device may use changed (a plugin switched on or off, installed,
   * upgraded): ask for the catalog again. */
  onCatalogChange(listener) {
    this.#catalogListeners.add(listener);
    return () => this.#catalogListeners.delete(listener);
  }

  // -- notifications and personal settings (docs/devices.md) ------------------------------

  /** The user's notifications, newest first, titled in `locale`: {items, unread}. */
  notifications({before, limit, unreadOnly, locale} = {}) {
    const frame = {type: "notifications"};
    if (before !== undefined) frame.before = before;
    if (limit !== undefined) frame.limit = limit;
    if (unreadOnly) frame.unread_only = true;
    if (locale) frame.locale = locale;
    return this.#request(frame);
  }

  /** Mark notifications read (`ids`, or "all"); resolves with {unread}. */
  markRead(ids) {
    return this.#request(ids === "all" ? {type: "mark_read", all: true} : {type: "mark_read", ids});
  }

  /** The notification groups this user may follow: {groups: [{group, following, default}]}. */
  groups() { return this.#request({type: "groups"}); }

  follow(group, following = true) { return this.#request({type: "follow", group, following}); }

  /** This user's personal settings of `plugin`: {user, plugin, values}. */
  personalSettings(plugin) { return this.#request({type: "personal_settings", plugin}); }

  changePersonalSettings(plugin, values) {
    return this.#request({type: "change_personal_settings", plugin, values});
  }

  /** Be told of each notification for this user as it is sent (rendered in the locale of the
   * last catalog or notifications request). */
  onNotification(listener) { return this.#listen("notification", listener); }

  /** Be told when this user's personal settings change on another device: (plugin, values). */
  onPersonalSettings(listener) { return this.#listen("personal_settings", listener); }

  #listen(kind, listener) {
    this.#pushListeners[kind].add(listener);
    return () => this.#pushListeners[kind].delete(listener);
  }

  get #token() { return this.#options.storage?.getItem(this.#options.tokenKey) ?? null; }

  #signedIn(answer) {
    this.identity = {user: answer.user, displayName: answer.display_name,
                     permissions: answer.permissions, expiresAt: answer.expires_at,
                     confirmed: true};
    this.#options.storage?.setItem(`${this.#options.tokenKey}-identity`,
                                   JSON.stringify(this.identity));
    this.#keep();
    this.#useStore(this.identity.user);
    this.#drain();
    // what was refused before signing in (or never sent) is asked for again, once; what a
    // listener subscribes to below is sent by subscribe itself
    this.#sendUnsent();
    for (const listener of this.#identityListeners) listener(this.identity);
    return this.identity;
  }

  #sendUnsent() {
    for (const [id, sub] of this.#subscriptions) if (!sub.sent) this.#sendSubscribe(id);
  }

  /** The signed-in user's OfflineStore (or null), once the kept session is read. */
  #opened() { return this.#ready.then(() => this.#store); }

  #useStore(user) {
    if (this.#storeUser === user) return;
    this.#storeUser = user;
    this.#tabs?.close();
    this.#tabs = globalThis.BroadcastChannel ? new BroadcastChannel(`mesh-queue:${user}`) : null;
    if (this.#tabs) {
      this.#tabs.onmessage = ({data}) => {
        if ("sending" in data) {
          this.#sendingElsewhere = data.sending;
          this.#changed(null);
        } else {
          this.#settledElsewhere(data.settled);
        }
      };
    }
    const previous = this.#store;
    this.#store = previous.then((store) => {
      store?.close();
      return OfflineStore.open(this.#options.offlinePrefix, user);
    }).catch((error) => { console.warn("mesh: no offline store", error); return null; });
  }

  #forget(reason) {
    const storage = this.#options.storage;
    // the token, and the identity and catalogs kept with it for the tab
    const kept = [];
    for (let i = 0; i < (storage?.length ?? 0); i++) {
      const key = storage.key(i);
      if (key === this.#options.tokenKey || key.startsWith(`${this.#options.tokenKey}-`)) kept.push(key);
    }
    for (const key of kept) storage.removeItem(key);
    this.#device?.clear(); // a shared device keeps nothing of a user who signed out
    for (const sub of this.#subscriptions.values()) sub.sent = false; // signing out ended them
    const was = this.identity;
    this.identity = null;
    if (was) for (const listener of this.#identityListeners) listener(null, reason);
  }

  /** Watch `topic` for `selector`: onValue(payload, version, {stale, at}) gets the current
   * value, then every newer one. The value kept from an earlier visit comes first, at once,
   * with stale true and `at` (ms since the epoch it arrived); values go stale again while the
   * connection is down. {cache: false} keeps nothing of this selector on the device
   * (sensitive data). Returns a function that stops watching. */
  subscribe(topic, selector, onValue, onError = (error) => console.warn(error),
            {cache = true} = {}) {
    const id = `s${this.#nextId++}`;
    const key = JSON.stringify([topic, selector]);
    // while the kept value is read, the subscription waits: it is sent with its version
    const sub = {topic, selector, onValue, onError, version: -1, sent: false, key, cache,
                 payload: undefined, at: 0, reading: cache};
    this.#subscriptions.set(id, sub);
    if (cache) {
      this.#opened().then((store) => store?.topic(key)).then((kept) => {
        if (kept && sub.version < 0 && this.#subscriptions.has(id)) {
          Object.assign(sub, {version: kept.version, exact: kept.exact, payload: kept.payload,
                              at: kept.at});
          onValue(kept.payload, kept.version, {stale: true, at: kept.at});
        }
      }).catch((error) => console.warn("mesh: offline cache", error)).finally(() => {
        sub.reading = false;
        if (!sub.sent) this.#sendSubscribe(id);
      });
    }
    this.#sendSubscribe(id);
    return () => {
      if (this.#subscriptions.delete(id)) {
        this.#send({type: "unsubscribe", id: this.#nextId++, subscription: id});
      }
    };
  }

  /** Push an action; resolves with its typed result, rejects with a MeshError.
   * {offline: true} (the default for an action its contract declares offline=True: the
   * catalog's offlineActions) queues it (in IndexedDB, surviving reloads) when it cannot be pushed now,
   * and replays the queue in order when the gateway is back; each is applied exactly once.
   * `baseVersion` is the version of the data it was based on (a processor may answer
   * `conflict`). A full queue rejects with MeshError("queue_full"). */
  async action(name, payload = {}, {offline = this.#offlineActions.has(name), baseVersion} = {}) {
    if (!offline) return this.#request({type: "action", action: name, payload});
    const store = await this.#opened();
    if (!store || !this.identity) throw new MeshError("unauthenticated", "sign in to queue actions");
    if (!this.#persisted) {
      this.#persisted = true;
      navigator.storage?.persist?.().catch(() => {});
    }
    const entry = {actionId: `${Date.now().toString(36)}-${crypto.randomUUID()}`, action: name,
                   payload, madeAt: Date.now(), baseVersion: baseVersion ?? null};
    if (!await store.enqueue(entry, this.#options.queueLimit)) {
      throw new MeshError("queue_full", `${this.#options.queueLimit} actions are waiting to be ` +
                          "sent already; try again once the device is back online");
    }
    const settled = new Promise((resolve, reject) => this.#waiting.set(entry.actionId, {resolve, reject}));
    this.#changed(null);
    this.#tabs?.postMessage({settled: null});
    this.#drain();
    return settled;
  }

  /** The queued actions, oldest first: {actionId, action, payload, madeAt, sending}. */
  async pendingActions() {
    const store = await this.#opened();
    const queued = store ? await store.queued() : [];
    return queued.map((entry) => ({...entry, sending: [this.#sending, this.#sendingElsewhere]
      .includes(entry.actionId)}));
  }

  /** The actions settled since they were queued (kept until forgotten), also those of an
   * earlier page: {actionId, action, payload, result} or {..., error: {code, message}}. */
  async settledActions() {
    const store = await this.#opened();
    return store ? store.settled() : [];
  }

  async forgetSettled(actionId) { await (await this.#opened())?.forgetSettled(actionId); }

  /** Take a queued action out before it is sent; MeshError("sending") if it is on its way. */
  async cancelAction(actionId) {
    if (actionId === this.#sending || actionId === this.#sendingElsewhere) {
      throw new MeshError("sending", "the action is being sent");
    }
    const store = await this.#opened();
    const entry = (await store?.queued() ?? []).find((e) => e.actionId === actionId);
    if (!entry) return false;
    await store.settle(entry, null);
    this.#waiting.get(actionId)?.reject(new MeshError("cancelled", "the action was cancelled"));
    this.#waiting.delete(actionId);
    this.#changed(null);
    this.#tabs?.postMessage({settled: null});
    return true;
  }

  /** Be told when the queue changes or a queued action settles (then with its outcome). */
  onActions(listener) {
    this.#actionListeners.add(listener);
    return () => this.#actionListeners.delete(listener);
  }

  #changed(settled) { for (const listener of this.#actionListeners) listener(settled); }

  /** Another tab of this user settled an action (or changed the queue: null). */
  #settledElsewhere(settled) {
    const waiting = settled && this.#waiting.get(settled.actionId);
    if (settled?.actionId === this.#sendingElsewhere) this.#sendingElsewhere = null;
    if (waiting) {
      this.#waiting.delete(settled.actionId);
      if (settled.error) {
        waiting.reject(new MeshError(settled.error.code, settled.error.message, settled.error.details));
      } else {
        waiting.resolve(settled.result);
      }
    }
    this.#changed(settled ?? null);
  }

  /** Push the queue, in order, one at a time, while connected and signed in. The user's tabs
   * share the queue (one IndexedDB): the Web Lock `mesh-queue:<user>` lets one of them push
   * at a time, and it tells the others what settled. */
  async #drain() {
    if (this.#draining) return;
    this.#draining = true;
    let retry = false;
    try {
      const store = await this.#opened();
      const user = this.#storeUser;
      const push = () => this.#push(store);
      retry = navigator.locks && user ? await navigator.locks.request(`mesh-queue:${user}`, push)
        : await push();
    } finally {
      this.#sending = null;
      this.#draining = false;
    }
    if (retry) setTimeout(() => this.#drain(), this.#backoff);
  }

  /** The replay itself (holding the queue's lock); true when to try again soon. */
  async #push(store) {
    let retry = false;
    try {
      while (store && this.status === "open" && this.identity?.confirmed) {
        const [entry] = await store.queued();
        if (!entry) break;
        this.#sending = entry.actionId;
        this.#changed(null);
        this.#tabs?.postMessage({sending: entry.actionId});
        const frame = {type: "action", action: entry.action, payload: entry.payload,
                       action_id: entry.actionId, made_at: entry.madeAt, sent_at: Date.now()};
        if (entry.baseVersion !== null) frame.base_version = entry.baseVersion;
        let outcome;
        try {
          outcome = {result: await this.#request(frame)};
        } catch (error) {
          if (!isFinal(error.code)) { retry = error.code !== "disconnected"; break; }
          outcome = {error: {code: error.code, message: error.message, details: error.details}};
        }
        await store.settle(entry, outcome);
        this.#sending = null;
        const waiting = this.#waiting.get(entry.actionId);
        this.#waiting.delete(entry.actionId);
        if (outcome.error) {
          waiting?.reject(new MeshError(outcome.error.code, outcome.error.message, outcome.error.details));
        } else {
          waiting?.resolve(outcome.result);
        }
        this.#changed({...entry, ...outcome});
        this.#tabs?.postMessage({settled: {...entry, ...outcome}});
      }
    } finally {
      this.#sending = null;
    }
    return retry;
  }

  /** Call an RPC that its contract opens to devices. */
  call(name, payload = {}) {
    return this.#request({type: "call", rpc: name, payload});
  }

  /** Be told of "connecting", "open" and "closed". */
  onStatus(listener) {
    this.#statusListeners.add(listener);
    listener(this.status);
    return () => this.#statusListeners.delete(listener);
  }

  close() {
    this.#closed = true;
    this.#tabs?.close();
    this.#socket?.close();
  }

  #setStatus(status) {
    this.status = status;
    for (const listener of this.#statusListeners) listener(status);
  }

  #connect() {
    this.#setStatus("connecting");
    const socket = new WebSocket(this.#url);
    this.#socket = socket;
    socket.onopen = async () => {
      this.#backoff = this.#options.minBackoff;
      const token = this.#token;
      if (token) {
        try {
          this.#signedIn(await this.#request({type: "sign_in", token}));
        } catch (error) {
          if (error.code === "unauthenticated") this.#forget(error.details?.reason ?? error.message);
        }
      }
      this.#setStatus("open");
      if (!token) this.#sendUnsent();
      this.#drain();
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data), event.data);
    socket.onclose = () => {
      for (const [id, request] of this.#pending) {
        clearTimeout(request.timer);
        request.reject(new MeshError("disconnected", "the connection to the gateway closed"));
        this.#pending.delete(id);
      }
      for (const sub of this.#subscriptions.values()) {
        sub.sent = false; // a new connection
        if (sub.version >= 0) sub.onValue(sub.payload, sub.version, {stale: true, at: sub.at});
      }
      this.#setStatus("closed");
      if (!this.#closed) {
        const delay = this.#backoff * (0.5 + Math.random());
        this.#backoff = Math.min(this.#backoff * 2, this.#options.maxBackoff);
        setTimeout(() => this.#connect(), delay);
      }
    };
  }

  #send(frame) {
    if (this.#socket?.readyState === WebSocket.OPEN) {
      this.#socket.send(JSON.stringify(frame));
      return true;
    }
    return false;
  }

  #sendSubscribe(id) {
    const sub = this.#subscriptions.get(id);
    if (!sub || sub.reading) return;
    const frame = {type: "subscribe", id, topic: sub.topic, selector: sub.selector};
    if (sub.version >= 0) frame.version = sub.exact ?? String(sub.version); // "unchanged" if it still is
    sub.sent = this.#send(frame);
  }

  #request(frame) {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      if (!this.#send({...frame, id})) {
        reject(new MeshError("disconnected", "not connected to the gateway"));
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new MeshError("timeout", "no answer from the gateway"));
      }, this.#options.timeout);
      this.#pending.set(id, {resolve, reject, timer});
    });
  }

  #receive(frame, text) {
    if (frame.type === "snapshot" || frame.type === "update" || frame.type === "unchanged") {
      // versions are 64-bit: the exact digits, which a JavaScript number would round, are
      // what goes back to the gateway on a resubscribe (the version comes before the payload)
      frame.exact = /"version":(-?\d+)/.exec(text)?.[1] ?? String(frame.version);
      const sub = this.#subscriptions.get(frame.id);
      // a snapshot replaces whatever the device had (another replica's versions differ);
      // updates only move forward
      if (!sub || (frame.type === "update" && frame.version <= sub.version)) return;
      if (frame.type !== "unchanged") {
        Object.assign(sub, {version: frame.version, exact: frame.exact, payload: frame.payload,
                            at: Date.now()});
        if (sub.cache) {
          const {key, payload, version, exact, at} = sub;
          this.#opened().then((store) => store?.keepTopic({key, payload, version, exact, at},
                                                        this.#options.cacheLimit))
            .catch((error) => console.warn("mesh: offline cache", error));
        }
      }
      sub.onValue(sub.payload, sub.version, {stale: false, at: sub.at});
      return;
    }
    if (frame.id === null && frame.type in this.#pushListeners) {
      const args = frame.type === "notification" ? [frame.notification] : [frame.plugin, frame.values];
      for (const listener of this.#pushListeners[frame.type]) listener(...args);
      return;
    }
    if (frame.type === "catalog_changed") {
      for (const listener of this.#catalogListeners) listener();
      return;
    }
    if (frame.type === "signed_out" && frame.id === null) {
      this.#forget(frame.reason); // expired or revoked: the subscriptions ended with it
      return;
    }
    const request = this.#pending.get(frame.id);
    if (frame.type !== "error" && request) {
      this.#pending.delete(frame.id);
      clearTimeout(request.timer);
      request.resolve(frame.type === "result" ? frame.result : frame);
    } else if (frame.type === "error") {
      const error = new MeshError(frame.error.code, frame.error.message, frame.error.details);
      if (request) {
        this.#pending.delete(frame.id);
        clearTimeout(request.timer);
        request.reject(error);
      } else if (this.#subscriptions.has(frame.id)) {
        const sub = this.#subscriptions.get(frame.id);
        sub.sent = false; // the gateway does not have it: refused, or ended
        if (error.code === "unauthenticated") {
          if (this.identity) this.#sendSubscribe(frame.id); // it crossed a sign-in: again
          return; // sent again when signed in
        }
        sub.onError(error);
      } else {
        console.warn("mesh gateway:", error);
      }
    }
  }
}
