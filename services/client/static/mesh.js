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
// stays signed in. Failed requests reject with a MeshError carrying the gateway's code,
// message and details ("unauthenticated", "forbidden" with details.permission, ...).

export class MeshError extends Error {
  constructor(code, message, details = null) {
    super(`${code}: ${message}`);
    this.name = "MeshError";
    this.code = code;
    this.details = details;
  }
}

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
  #pushListeners = {notification: new Set(), personal_settings: new Set()};
  status = "connecting";
  identity = null; // {user, displayName, permissions, expiresAt} once signed in

  constructor(url = defaultUrl(), options = {}) {
    this.#url = url;
    this.#options = {minBackoff: 250, maxBackoff: 5000, timeout: 15000,
                     storage: globalThis.sessionStorage ?? null, tokenKey: "mesh-token",
                     ...options};
    this.#backoff = this.#options.minBackoff;
    this.#connect();
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
    try { await this.#request({type: "sign_out"}); } finally { this.#forget("signed out"); }
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
    const {topics, actions, rpcs, screens = []} = await this.#request(frame);
    return {topics, actions, rpcs, screens};
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
                     permissions: answer.permissions, expiresAt: answer.expires_at};
    // what was refused before signing in (or never sent) is asked for again, once; what a
    // listener subscribes to below is sent by subscribe itself
    this.#sendUnsent();
    for (const listener of this.#identityListeners) listener(this.identity);
    return this.identity;
  }

  #sendUnsent() {
    for (const [id, sub] of this.#subscriptions) if (!sub.sent) this.#sendSubscribe(id);
  }

  #forget(reason) {
    this.#options.storage?.removeItem(this.#options.tokenKey);
    for (const sub of this.#subscriptions.values()) sub.sent = false; // signing out ended them
    const was = this.identity;
    this.identity = null;
    if (was) for (const listener of this.#identityListeners) listener(null, reason);
  }

  /** Watch `topic` for `selector`: onValue(payload, version) gets the current value, then
   * every newer one. Returns a function that stops watching. */
  subscribe(topic, selector, onValue, onError = (error) => console.warn(error)) {
    const id = `s${this.#nextId++}`;
    this.#subscriptions.set(id, {topic, selector, onValue, onError, version: -1, sent: false});
    this.#sendSubscribe(id);
    return () => {
      if (this.#subscriptions.delete(id)) {
        this.#send({type: "unsubscribe", id: this.#nextId++, subscription: id});
      }
    };
  }

  /** Push an action; resolves with its typed result, rejects with a MeshError. */
  action(name, payload = {}) {
    return this.#request({type: "action", action: name, payload});
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
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = () => {
      for (const [id, request] of this.#pending) {
        clearTimeout(request.timer);
        request.reject(new MeshError("disconnected", "the connection to the gateway closed"));
        this.#pending.delete(id);
      }
      for (const sub of this.#subscriptions.values()) sub.sent = false; // a new connection
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
    if (sub) sub.sent = this.#send({type: "subscribe", id, topic: sub.topic, selector: sub.selector});
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

  #receive(frame) {
    if (frame.type === "snapshot" || frame.type === "update") {
      const sub = this.#subscriptions.get(frame.id);
      if (sub && frame.version > sub.version) {
        sub.version = frame.version;
        sub.onValue(frame.payload, frame.version);
      }
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
