// mesh.js — the device client of the mesh client service (docs/devices.md).
// A plain ES module, no build step:  import { Mesh } from "/mesh.js";
//
//   const mesh = new Mesh();                                  // ws(s)://<this host>/ws
//   const stop = mesh.subscribe("tutorial.string_ints", {}, (payload, version) => {...});
//   const row = await mesh.action("tutorial.add_int_value", {string_int_id: 1, offset: 1});
//   const reply = await mesh.call("tutorial.add_string_int", {string1: "a", int1: 1});
//
// It reconnects by itself (with backoff) and subscribes again to everything it watched.
// Failed requests reject with a MeshError carrying the gateway's code, message and details.

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
  #subscriptions = new Map(); // subscription id -> {topic, selector, onValue, onError, version}
  #backoff;
  #closed = false;
  #statusListeners = new Set();
  status = "connecting";

  constructor(url = defaultUrl(), options = {}) {
    this.#url = url;
    this.#options = {minBackoff: 250, maxBackoff: 5000, timeout: 15000, ...options};
    this.#backoff = this.#options.minBackoff;
    this.#connect();
  }

  /** Watch `topic` for `selector`: onValue(payload, version) gets the current value, then
   * every newer one. Returns a function that stops watching. */
  subscribe(topic, selector, onValue, onError = (error) => console.warn(error)) {
    const id = `s${this.#nextId++}`;
    this.#subscriptions.set(id, {topic, selector, onValue, onError, version: -1});
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
    socket.onopen = () => {
      this.#backoff = this.#options.minBackoff;
      this.#setStatus("open");
      for (const id of this.#subscriptions.keys()) this.#sendSubscribe(id);
    };
    socket.onmessage = (event) => this.#receive(JSON.parse(event.data));
    socket.onclose = () => {
      for (const [id, request] of this.#pending) {
        clearTimeout(request.timer);
        request.reject(new MeshError("disconnected", "the connection to the gateway closed"));
        this.#pending.delete(id);
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
    if (sub) this.#send({type: "subscribe", id, topic: sub.topic, selector: sub.selector});
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
    const request = this.#pending.get(frame.id);
    if (frame.type === "result" && request) {
      this.#pending.delete(frame.id);
      clearTimeout(request.timer);
      request.resolve(frame.result);
    } else if (frame.type === "error") {
      const error = new MeshError(frame.error.code, frame.error.message, frame.error.details);
      if (request) {
        this.#pending.delete(frame.id);
        clearTimeout(request.timer);
        request.reject(error);
      } else if (this.#subscriptions.has(frame.id)) {
        this.#subscriptions.get(frame.id).onError(error);
      } else {
        console.warn("mesh gateway:", error);
      }
    }
  }
}
