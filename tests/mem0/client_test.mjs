// client_test.mjs — mem0's own client (MemoryClient of the mem0ai npm
// package, version 3) against a live engram serve: every call an
// application makes, and what engram answers to each, checked.
//
//   ENGRAM_URL=http://127.0.0.1:PORT ENGRAM_KEY=... ENGRAM_KEY_ALICE=... \
//   MEM0_TELEMETRY=false node client_test.mjs      (run where mem0ai is
//                                                   installed: the cwd)
//
// ENGRAM_KEY may use every namespace; ENGRAM_KEY_ALICE only "user:alice".
// The client would send telemetry to an external host unless
// MEM0_TELEMETRY=false; the script refuses to run without it, and fails any
// request that is not for ENGRAM_URL, so nothing leaves the machine.
// Prints one line per check, then "passed N failed M"; exits 1 on a failure.
import { createRequire } from "node:module";
import path from "node:path";

const base = process.env.ENGRAM_URL;
const key = process.env.ENGRAM_KEY;
const aliceKey = process.env.ENGRAM_KEY_ALICE;
if (!base || !key || !aliceKey) {
  console.error("client_test: set ENGRAM_URL, ENGRAM_KEY and ENGRAM_KEY_ALICE");
  process.exit(2);
}
if (process.env.MEM0_TELEMETRY !== "false") {
  console.error("client_test: set MEM0_TELEMETRY=false (the client's telemetry goes to an external host)");
  process.exit(2);
}

// Every request the client makes goes through the global fetch: refuse
// (and count) any that is not for engram.
const outside = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (url, init) => {
  const u = String(url instanceof Request ? url.url : url);
  if (!u.startsWith(base + "/")) {
    outside.push(u);
    return Promise.reject(new Error(`client_test: blocked a request to ${u}`));
  }
  return realFetch(url, init);
};

// The client reports a failed init ping on the console; the one client
// here with an unknown key must be the only one to.
const initFailures = [];
const realError = console.error;
const realWarn = console.warn;
console.error = (...args) => {
  const text = String(args[0] ?? "");
  if (text.startsWith("Failed to initialize client")) initFailures.push(String(args[1]?.message ?? args[1]));
  else realError(...args);
};
console.warn = (...args) => {
  if (!String(args[0] ?? "").startsWith("No telemetry ID found")) realWarn(...args);
};

const require = createRequire(path.join(process.cwd(), "client_test.cjs"));
const mem0 = require("mem0ai");
const { MemoryClient, MemoryNotFoundError, AuthenticationError, ValidationError } = mem0;

let passed = 0;
let failed = 0;
function check(name, cond, detail) {
  if (cond) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail !== undefined ? `: ${typeof detail === "string" ? detail : JSON.stringify(detail)}` : ""}`);
  }
}
// Runs fn, expecting it to reject with an instance of cls.
async function rejects(name, fn, cls) {
  try {
    const v = await fn();
    check(name, false, `resolved with ${JSON.stringify(v)}`);
  } catch (e) {
    check(name, e instanceof cls, `${e.name}: ${e.message}`);
  }
}
const ids = (list) => list.map((m) => m.id);

const client = new MemoryClient({ apiKey: key, host: base });
const alice = new MemoryClient({ apiKey: aliceKey, host: base });
const stranger = new MemoryClient({ apiKey: "not-a-key-of-this-server", host: base });

try {
  // ---------------------------------------------------------------- ping
  await client.ping();
  check("ping answers status ok", true);
  await rejects("ping with an unknown key fails", () => stranger.ping(), AuthenticationError);

  // ----------------------------------------------------------------- add
  const added = await client.add(
    [
      { role: "user", content: "I drink green tea every morning" },
      { role: "assistant", content: "Noted, green tea in the morning" },
    ],
    { userId: "alice", runId: "r1", metadata: { topic: "drinks" } },
  );
  check("add returns one event per message", Array.isArray(added) && added.length === 2, added);
  check("add events are ADD with the text",
    added.every((m) => m.event === "ADD" && typeof m.id === "string") &&
      added[0].memory === "I drink green tea every morning" &&
      added[0].data?.memory === "I drink green tea every morning", added);
  check("add keeps role and ids", added[0].role === "user" && added[1].role === "assistant" &&
    added[0].userId === "alice" && added[0].runId === "r1" && added[0].metadata?.topic === "drinks", added);
  const teaId = added[0].id;
  const bobAdded = await client.add([{ role: "user", content: "Bob plays chess every weekend" }], { userId: "bob" });
  const chessId = bobAdded[0].id;
  await client.add([{ role: "user", content: "The travel agent books green tea tours" }], { agentId: "travel" });

  // -------------------------------------------------------------- search
  let res = await client.search("green tea", { filters: { user_id: "alice" } });
  check("search finds the memory with its user's filter", ids(res.results).includes(teaId), res);
  check("search results carry a score in [0,1]",
    res.results.length > 0 && res.results.every((m) => typeof m.score === "number" && m.score >= 0 && m.score <= 1), res);
  check("search results keep the entity ids", res.results.every((m) => m.userId === "alice"), res);
  res = await client.search("green tea", { filters: { user_id: "bob" } });
  check("search with another user's filter does not find it", !ids(res.results).includes(teaId), res);
  res = await client.search("green tea", { filters: { AND: [{ user_id: "alice" }, { run_id: "r1" }] } });
  check("search with AND of user_id and run_id finds it", ids(res.results).includes(teaId), res);
  res = await client.search("green tea", { filters: { AND: [{ user_id: "alice" }, { run_id: "r2" }] } });
  check("search with another run_id does not find it", res.results.length === 0, res);
  res = await client.search("green tea", { filters: { user_id: "alice" }, topK: 1 });
  check("search honours top_k", res.results.length === 1, res);
  res = await client.search("chess", { filters: { OR: [{ user_id: "alice" }, { user_id: "bob" }] } });
  check("search with OR reads both users", ids(res.results).includes(chessId), res);
  res = await client.search("green tea", { filters: { OR: [{ user_id: "alice" }, { agent_id: "travel" }] } });
  check("search with OR of a user and an agent merges both",
    res.results.some((m) => m.userId === "alice") && res.results.some((m) => m.agentId === "travel"), res);
  res = await client.search("green tea", { filters: { user_id: { in: ["bob", "carol"] } } });
  check("search with \"in\" reads only the users named", res.results.length === 0, res);
  await rejects("search without an entity filter is a 400", () => client.search("tea", { filters: {} }), ValidationError);
  await rejects("search on an unsupported filter is a 400",
    () => client.search("tea", { filters: { user_id: "alice", created_at: { gte: "2024-01-01" } } }), ValidationError);

  // ------------------------------------------------------ getAll, paging
  const texts = Array.from({ length: 7 }, (_, i) => `page memory number ${i}`);
  const pagerAdded = await client.add(texts.map((t) => ({ role: "user", content: t })), { userId: "pager" });
  const pagerIds = ids(pagerAdded);
  const seen = [];
  let page = 1;
  let last;
  for (; page <= 5; page++) {
    last = await client.getAll({ filters: { user_id: "pager" }, page, pageSize: 3 });
    seen.push(...ids(last.results));
    if (!last.next) break;
  }
  check("getAll pages report the total count", last.count === 7, last);
  check("getAll pages of 3 take 3 requests", page === 3, { page });
  check("getAll pages return every memory once",
    seen.length === 7 && new Set(seen).size === 7 && pagerIds.every((id) => seen.includes(id)), { seen, pagerIds });
  check("getAll keeps creation order", JSON.stringify(seen) === JSON.stringify(pagerIds), { seen, pagerIds });
  const all = await client.getAll({ filters: { user_id: "pager" } });
  check("getAll without paging returns them all", all.results.length === 7 && all.next === null, all);
  const none = await client.getAll({ filters: { user_id: "nobody" } });
  check("getAll of an unknown user is empty", none.count === 0 && none.results.length === 0, none);

  // ------------------------------------------------------------------ get
  let m = await client.get(teaId);
  check("get returns the content", m.id === teaId && m.memory === "I drink green tea every morning", m);
  check("get returns ids, metadata and ISO times",
    m.userId === "alice" && m.runId === "r1" && m.metadata?.topic === "drinks" &&
      !Number.isNaN(Date.parse(m.createdAt)) && /Z$/.test(m.createdAt), m);
  await rejects("get of an unknown id is a 404", () => client.get("0190a5e2-7b3c-7def-8123-456789abcdef"), MemoryNotFoundError);

  // ------------------------------------------- raw HTTP, beside the client
  const json = { Authorization: `Token ${key}`, "Content-Type": "application/json" };
  let raw = await realFetch(`${base}/v1/memories/${teaId}/`, { headers: json });
  let body = await raw.json();
  check("GET /v1/memories/ID/ (mem0's path) answers in mem0's shape",
    raw.status === 200 && body.memory === "I drink green tea every morning" && body.user_id === "alice", body);
  raw = await realFetch(`${base}/v1/memories/${teaId}?ns=user%3Aalice`, {
    headers: { Authorization: `Bearer ${key}` },
  });
  body = await raw.json();
  check("GET /v1/memories/ID (no slash) stays engram's native route",
    raw.status === 200 && body.content === "I drink green tea every morning" && body.memory === undefined, body);
  raw = await realFetch(`${base}/v3/memories/search/`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ query: "tea", filters: { user_id: "alice" }, top_k: 0 }),
  });
  body = await raw.json();
  check("a bad field is a 400 naming it, in engram's error shape",
    raw.status === 400 && body.error?.code === "invalid" && /top_k/.test(body.error?.message), body);
  raw = await realFetch(`${base}/v3/memories/add/`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ user_id: "alice", messages: [{ role: "user", content: "" }] }),
  });
  body = await raw.json();
  check("an empty message is a 400 naming it",
    raw.status === 400 && /messages\[0\]\.content/.test(body.error?.message), body);
  raw = await realFetch(`${base}/v3/memories/add/`, {
    method: "POST",
    headers: json,
    body: JSON.stringify({ messages: [{ role: "user", content: "no owner" }] }),
  });
  body = await raw.json();
  check("add without an entity is a 400", raw.status === 400 && /user_id/.test(body.error?.message), body);

  // --------------------------------------------------------------- update
  const upd = await client.update(teaId, { text: "I drink green tea twice a day", metadata: { topic: "habits" } });
  check("update answers with the changed memory", upd.memory === "I drink green tea twice a day", upd);
  m = await client.get(teaId);
  check("update changes the text", m.memory === "I drink green tea twice a day", m);
  check("update replaces the metadata and keeps the ids",
    m.metadata?.topic === "habits" && m.userId === "alice" && m.runId === "r1", m);
  res = await client.search("twice", { filters: { AND: [{ user_id: "alice" }, { run_id: "r1" }] } });
  check("the updated text is searchable under its run", ids(res.results).includes(teaId), res);

  // -------------------------------------------------------------- history
  const hist = await client.history(teaId);
  check("history shows ADD then UPDATE",
    Array.isArray(hist) && hist.length === 2 && hist[0].event === "ADD" && hist[1].event === "UPDATE", hist);
  check("history entries carry old and new text",
    hist[0].oldMemory === null && hist[0].newMemory === "I drink green tea every morning" &&
      hist[1].oldMemory === "I drink green tea every morning" &&
      hist[1].newMemory === "I drink green tea twice a day" && hist[1].memoryId === teaId &&
      !Number.isNaN(Date.parse(hist[1].createdAt)), hist);

  // ---------------------------------------------------------------- delete
  const del = await client.delete(added[1].id);
  check("delete answers a message", typeof del.message === "string", del);
  await rejects("a deleted memory is gone", () => client.get(added[1].id), MemoryNotFoundError);
  res = await client.search("morning", { filters: { user_id: "alice" } });
  check("a deleted memory is not found by search", !ids(res.results).includes(added[1].id), res);

  // ------------------------------------------------------------- deleteAll
  const da = await client.deleteAll({ userId: "pager" });
  check("deleteAll answers a message", typeof da.message === "string", da);
  const after = await client.getAll({ filters: { user_id: "pager" } });
  check("deleteAll empties the user", after.count === 0 && after.results.length === 0, after);
  await rejects("deleteAll without an entity is a 400", () => client.deleteAll({}), ValidationError);
  const du = await client.deleteUsers({ userId: "bob" });
  check("deleteUsers deletes an entity", du.message === "Entity deleted successfully.", du);
  await rejects("bob's memory went with him", () => client.get(chessId), MemoryNotFoundError);
  const still = await client.getAll({ filters: { user_id: "alice" } });
  check("deleting other users left alice alone", ids(still.results).includes(teaId), still);

  // ------------------------------------- many memories, pages of deletions
  const bulk = Array.from({ length: 600 }, (_, i) => ({ role: "user", content: `bulk memory ${i}` }));
  const bulkAdded = await client.add(bulk, { userId: "bulk", runId: "b" });
  check("add stores 600 messages at once", bulkAdded.length === 600, bulkAdded.length);
  let p6 = await client.getAll({ filters: { user_id: "bulk" }, page: 6, pageSize: 100 });
  check("getAll's last page is full and says so", p6.count === 600 && p6.results.length === 100 && p6.next === null &&
    p6.previous !== null, { count: p6.count, n: p6.results.length, next: p6.next });
  p6 = await client.getAll({ filters: { user_id: "bulk" }, page: 7, pageSize: 100 });
  check("getAll past the end is empty", p6.count === 600 && p6.results.length === 0, p6);
  // Clients that go away mid-request: the server cancels their reads.
  const aborted = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => {
    const ac = new AbortController();
    const req = realFetch(`${base}/v3/memories/?page=${i + 1}&page_size=10`, {
      method: "POST",
      headers: { Authorization: `Token ${key}`, "Content-Type": "application/json" },
      body: JSON.stringify({ filters: { AND: [{ user_id: "bulk" }, { run_id: "b" }] } }),
      signal: ac.signal,
    });
    setTimeout(() => ac.abort(), 5 + 2 * i);
    return req;
  }));
  check("requests can be abandoned", aborted.length === 20);
  await client.ping();
  check("the server answers after abandoned requests", true);
  const bulkDel = await client.deleteAll({ userId: "bulk", runId: "b" });
  check("deleteAll deletes page after page", bulkDel.deleted === 600, bulkDel);
  p6 = await client.getAll({ filters: { user_id: "bulk" } });
  check("nothing of the 600 is left", p6.count === 0, p6);

  // ------------------------------------------------ a key for one namespace
  const bob2 = await client.add([{ role: "user", content: "Bob is back at the chess club" }], { userId: "bob" });
  res = await alice.search("green tea", { filters: { user_id: "alice" } });
  check("alice's key searches alice", ids(res.results).includes(teaId), res);
  m = await alice.get(teaId);
  check("alice's key gets alice's memory", m.id === teaId, m);
  await rejects("alice's key may not add for bob",
    () => alice.add([{ role: "user", content: "x" }], { userId: "bob" }), AuthenticationError);
  await rejects("alice's key may not search bob",
    () => alice.search("chess", { filters: { user_id: "bob" } }), AuthenticationError);
  await rejects("alice's key may not list bob",
    () => alice.getAll({ filters: { OR: [{ user_id: "alice" }, { user_id: "bob" }] } }), AuthenticationError);
  await rejects("alice's key may not deleteAll bob", () => alice.deleteAll({ userId: "bob" }), AuthenticationError);
  await rejects("bob's memory does not exist for alice's key (404)", () => alice.get(bob2[0].id), MemoryNotFoundError);
  await rejects("nor can alice's key update it", () => alice.update(bob2[0].id, { text: "hacked" }), MemoryNotFoundError);
  await rejects("nor delete it", () => alice.delete(bob2[0].id), MemoryNotFoundError);
  await rejects("nor read its history", () => alice.history(bob2[0].id), MemoryNotFoundError);
  m = await client.get(bob2[0].id);
  check("bob's memory is untouched", m.memory === "Bob is back at the chess club", m);
} catch (e) {
  check("no call throws unexpectedly", false, `${e.name}: ${e.message}\n${e.stack}`);
}

// Give the client's background work (its init ping, telemetry hooks) a
// moment to surface before the last check.
await new Promise((r) => setTimeout(r, 200));
check("only the client with an unknown key failed its init ping",
  initFailures.length === 1 && initFailures[0].includes("not valid"), initFailures);
check("no request left for another host", outside.length === 0, outside);
console.log(`passed ${passed} failed ${failed}`);
process.exit(failed ? 1 : 0);
