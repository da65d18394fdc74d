// The console's one way to the API: same-origin fetches with the session cookie (HttpOnly:
// no script reads it), the CSRF token on every write (held in memory only, never in
// storage), and problem+json refusals turned into their words.

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
}

export class ApiError extends Error {
  constructor(public problem: Problem) {
    super(problem.detail || problem.title);
  }
}

let csrf = "";
export const session = { user: "" };

async function problemOf(r: Response): Promise<Problem> {
  try {
    const p = await r.json();
    if (p && typeof p.detail === "string") return p as Problem;
  } catch {
    /* not JSON */
  }
  return { type: "about:blank", title: r.statusText, status: r.status, detail: `${r.status} ${r.statusText}` };
}

export async function call<T>(method: string, path: string, body?: unknown, raw?: Blob): Promise<T> {
  const headers: Record<string, string> = {};
  if (method !== "GET" && method !== "HEAD") headers["x-csrf-token"] = csrf;
  let payload: BodyInit | undefined;
  if (raw) {
    payload = raw;
    headers["content-type"] = raw.type || "application/octet-stream";
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers["content-type"] = "application/json";
  }
  const r = await fetch(path, { method, headers, body: payload, credentials: "same-origin" });
  if (!r.ok) throw new ApiError(await problemOf(r));
  if (r.status === 204) return undefined as T;
  const type = r.headers.get("content-type") ?? "";
  return (type.includes("json") ? await r.json() : await r.text()) as T;
}

export async function signIn(token: string): Promise<void> {
  const s = await call<{ user: string; csrf: string }>("POST", "/v1/session", { token });
  csrf = s.csrf;
  session.user = s.user;
}

export async function resume(): Promise<boolean> {
  try {
    const s = await call<{ user: string; csrf: string }>("GET", "/v1/session");
    csrf = s.csrf;
    session.user = s.user;
    return true;
  } catch {
    return false;
  }
}

export async function signOut(): Promise<void> {
  await call("DELETE", "/v1/session");
  csrf = "";
  session.user = "";
}
