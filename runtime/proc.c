/*
 * proc.c - child crt processes, parent side (proc.h): starting one
 * (posix_spawn with a socket pair), the per-runtime manager with its
 * SIGCHLD reaper and its shutdown hook, the life of a child object (exit,
 * outcome, protocol error, freeing) and crt_proc_terminate, the one
 * termination policy (SIGTERM, CRT_PROC_GRACE_MS, SIGKILL) that
 * crt.process.exec/command (bindings/exec.c) uses too.
 *
 * Loop thread only.
 *
 * Ownership. A child is a malloc'd crt_proc holding two libuv handles (the
 * process and the pipe, whose link lives in p->ep.ipc) and referenced by a
 * Lua userdata box (the binding's). It is freed when the box was collected
 * and both handles are closed (p->refs counts them), never by the GC while
 * libuv still uses it.
 *
 * Starting. posix_spawn (a vfork in glibc: no page tables copied, the
 * parent waits only for the exec) with a socket pair; the child's end
 * becomes CRT_CHILD_FD. Children are reaped by the manager's own SIGCHLD
 * watcher (a uv_signal_t), which waits for each of its children by pid, so
 * it never takes the status of a process that libuv (crt.process.exec) or
 * the host started.
 *
 * Liveness. The handles are unref'd: a child nobody waits on does not keep
 * crt running (it is ended at shutdown). While a task waits on it, the pipe
 * and the SIGCHLD watcher are ref'd (crt_proc_ep_hold), so the loop stays
 * alive and a deadlock is not reported. Every child is reaped: by the
 * watcher, or at shutdown by the close hook (crt_proc_terminate).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"

extern char **environ;

struct crt_proc_mgr {
  crt_handle_close_fn close_fn; /* the handle convention of rt.h, for sigchld */
  uv_signal_t sigchld;
  crt_runtime *rt;
  crt_list procs; /* every child not yet freed */
  int nrunning;   /* not reaped yet */
  int nwait;      /* tasks waiting on a child: keep sigchld ref'd */
};

static const char mgr_key = 'P';

/* ---- termination: the one grace policy --------------------------------------- */

static double now_ms(void) { return (double)uv_hrtime() / 1e6; }

/* Reaped now or before (by someone else: ECHILD)? */
static int reap_nohang(int pid) {
  int st;
  pid_t r;
  do
    r = waitpid(pid, &st, WNOHANG);
  while (r < 0 && errno == EINTR);
  return r == pid || (r < 0 && errno == ECHILD);
}

void crt_proc_terminate(const int *pids, size_t n) {
  /* Which are left: a small set on the stack, a larger one on the heap. */
  unsigned char small[64];
  unsigned char *left = n <= sizeof small ? small : malloc(n);
  if (!left) {
    for (size_t i = 0; i < n; i++) /* no memory: one at a time */
      crt_proc_terminate(&pids[i], 1);
    return;
  }
  size_t nleft = 0;
  for (size_t i = 0; i < n; i++) {
    left[i] = pids[i] > 0 && !reap_nohang(pids[i]) && kill(pids[i], SIGTERM) == 0;
    nleft += left[i];
  }
  double deadline = now_ms() + CRT_PROC_GRACE_MS;
  while (nleft > 0 && now_ms() <= deadline) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
    nleft = 0;
    for (size_t i = 0; i < n; i++) {
      if (left[i] && reap_nohang(pids[i]))
        left[i] = 0;
      nleft += left[i];
    }
  }
  for (size_t i = 0; i < n && nleft > 0; i++) {
    if (!left[i])
      continue;
    int st;
    kill(pids[i], SIGKILL);
    while (waitpid(pids[i], &st, 0) < 0 && errno == EINTR)
      ;
  }
  if (left != small)
    free(left);
}

/* ---- the life of a child ------------------------------------------------------ */

void crt_proc_mgr_hold(crt_proc_mgr *m, int delta) {
  m->nwait += delta;
  if (m->nwait > 0)
    uv_ref((uv_handle_t *)&m->sigchld);
  else
    uv_unref((uv_handle_t *)&m->sigchld);
}

static void report(crt_proc *p, lua_State *L) {
  if (p->report)
    p->report(L, p);
}

static void proc_free(crt_proc *p) {
  if (p->mgr)
    crt_list_remove(&p->mgr->procs, &p->link);
  if (!p->ep.started) {
    /* The link never opened: its buffers were not freed by its close. */
    crt_buf_free(&p->ep.ipc.batch);
    crt_buf_free(&p->ep.ipc.spare);
    crt_ipc_reader_free(&p->ep.ipc.rd);
  }
  crt_ipc_msg_free(p->result);
  crt_proc_ep_free_queue(&p->ep);
  free(p);
}

void crt_proc_unref(crt_proc *p) {
  if (--p->refs == 0)
    proc_free(p);
}

/* Done once reaped and its last message is in (or cannot come any more):
 * wake the awaiters, close the pipe. */
void crt_proc_check(crt_proc *p) {
  if (p->done || !p->exited || !(p->result || p->ep.ended))
    return;
  p->done = 1;
  while (!crt_list_empty(&p->awaiters))
    crt_proc_wake(crt_container_of(p->awaiters.head, crt_proc_waiter, link), NULL);
  if (!p->ep.ended) {
    p->ep.ended = 1;
    crt_proc_ep_deliver(&p->ep);
  }
  crt_ipc_close(&p->ep.ipc);
  if (!p->box)
    report(p, crt_lua(p->ep.rt));
}

void crt_proc_protocol_error(crt_proc *p, const char *why) {
  if (p->proto)
    return;
  p->proto = 1;
  snprintf(p->why, sizeof p->why, "%s", why);
  p->ep.ended = 1;
  crt_ipc_pause(&p->ep.ipc, 1);
  if (!p->exited && p->pid > 0)
    kill(p->pid, SIGKILL);
}

/* Reaped with wait status st (-1: someone else took the status). */
static void proc_exited(crt_proc *p, int st) {
  p->exited = 1;
  if (p->mgr)
    p->mgr->nrunning--;
  if (st != -1 && WIFSIGNALED(st))
    p->term_signal = WTERMSIG(st);
  else
    p->exit_status = st == -1 ? -1 : WEXITSTATUS(st);
  /* Read to the end even if the queue is full: the EOF (or the results)
   * must come for the child to be done. */
  p->ep.read_all = 1;
  crt_proc_ep_flow(&p->ep);
  crt_proc_check(p);
}

void crt_proc_forget(crt_proc *p) {
  p->box = NULL;
  p->ep.discard = 1;
  p->ep.read_all = 1;
  crt_proc_ep_free_queue(&p->ep);
  crt_proc_ep_flow(&p->ep);
}

int crt_proc_signal(crt_proc *p, int sig) {
  if (p->exited || p->pid <= 0)
    return CRT_PROC_EEXITED;
  if (kill(p->pid, sig) != 0)
    return uv_translate_sys_error(errno);
  if (sig != 0)
    p->killed = 1;
  return 0;
}

void crt_proc_await_prepare(crt_proc *p) {
  if (!p->ep.read_all) {
    p->ep.read_all = 1;
    crt_proc_ep_flow(&p->ep);
  }
}

int crt_proc_alive(const crt_proc *p) { return !p->exited && !p->ep.ended && !p->ep.ipc.werr; }

/* ---- the per-runtime manager -------------------------------------------------- */

/* SIGCHLD: reap those of our children that exited, each by its pid. */
static void on_sigchld(uv_signal_t *h, int signum) {
  crt_proc_mgr *m = crt_container_of(h, crt_proc_mgr, sigchld);
  (void)signum;
  crt_list_each_safe(&m->procs, it, nx) {
    if (m->nrunning <= 0)
      break;
    crt_proc *p = crt_container_of(it, crt_proc, link);
    if (p->exited || p->pid <= 0)
      continue;
    int st;
    pid_t r;
    do
      r = waitpid(p->pid, &st, WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == p->pid)
      proc_exited(p, st);
    else if (r < 0 && errno == ECHILD)
      proc_exited(p, -1); /* reaped by someone else (a host's waitpid(-1)) */
  }
}

static void mgr_closed(uv_handle_t *h) { free(crt_container_of(h, crt_proc_mgr, sigchld)); }

/* The runtime closes the watcher through this if it is still open. */
static void mgr_handle_close(uv_handle_t *h) {
  if (!uv_is_closing(h))
    uv_close(h, mgr_closed);
}

/* Shutdown (after every task was cancelled): end every child still running
 * (crt_proc_terminate), close the handles, report failures nobody
 * awaited. */
static void mgr_close(void *ud) {
  crt_proc_mgr *m = ud;
  lua_State *L = crt_lua(m->rt);
  size_t n = 0;
  for (crt_link *it = m->procs.head; it; it = it->next)
    n++;
  int small[32] = {0};
  int *pids = n <= 32 ? small : malloc(n * sizeof *pids);
  size_t k = 0;
  for (crt_link *it = m->procs.head; it; it = it->next) {
    crt_proc *p = crt_container_of(it, crt_proc, link);
    if (!p->exited && p->pid > 0) {
      if (pids)
        pids[k++] = p->pid;
      else
        crt_proc_terminate(&p->pid, 1); /* no memory: one at a time */
      p->exited = 1;
      p->killed = 1;
      m->nrunning--;
    }
  }
  if (pids) {
    crt_proc_terminate(pids, k);
    if (pids != small)
      free(pids);
  }
  crt_link *it;
  while ((it = crt_list_pop(&m->procs))) {
    crt_proc *p = crt_container_of(it, crt_proc, link);
    p->mgr = NULL;
    if (!p->done) {
      p->done = 1;
      p->killed = 1;
    } else if (p->box) {
      report(p, L);
    }
    crt_ipc_close(&p->ep.ipc);
  }
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mgr_key);
  if (!uv_is_closing((uv_handle_t *)&m->sigchld))
    uv_close((uv_handle_t *)&m->sigchld, mgr_closed);
}

static void ignore_sigpipe(void) {
  /* Writes to a child that died must fail with EPIPE, not kill us; a host
   * that installed its own handler keeps it. */
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

crt_proc_mgr *crt_proc_mgr_get(lua_State *L, crt_runtime *rt) {
  lua_rawgetp(L, LUA_REGISTRYINDEX, &mgr_key);
  crt_proc_mgr *m = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (m)
    return m;
  m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  m->rt = rt;
  m->close_fn = mgr_handle_close;
  if (crt_rt_on_close(rt, mgr_close, m) != 0) {
    free(m);
    return NULL;
  }
  /* Watch before the first spawn, so that no exit is missed. */
  uv_signal_init(crt_rt_loop(rt), &m->sigchld);
  m->sigchld.data = &m->close_fn;
  uv_signal_start(&m->sigchld, on_sigchld, SIGCHLD);
  uv_unref((uv_handle_t *)&m->sigchld);
  ignore_sigpipe();
  lua_pushlightuserdata(L, m);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &mgr_key);
  return m;
}

/* ---- starting a child --------------------------------------------------------- */

const char *crt_proc_find_exe(crt_runtime *rt, char *buf, size_t size) {
  const char *path = crt_rt_config(rt)->exe_path;
  if (path && path[0])
    return path;
  const char *env = getenv("CRT_EXE");
  if (env && env[0])
    return env;
  Dl_info info;
  if (dladdr((void *)crt_proc_find_exe, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    if (slash) {
      snprintf(buf, size, "%.*s/crt", (int)(slash - info.dli_fname), info.dli_fname);
      if (access(buf, X_OK) == 0)
        return buf;
    }
  }
  return NULL;
}

crt_proc *crt_proc_new(crt_proc_mgr *m, void **box, crt_proc_report_fn rep) {
  crt_proc *p = calloc(1, sizeof *p);
  if (!p)
    return NULL;
  crt_ipc_init(&p->ep.ipc);
  p->ep.rt = m->rt;
  p->ep.proc = p;
  p->refs = 1;
  p->box = box;
  p->report = rep;
  p->mgr = m;
  crt_list_push_front(&m->procs, &p->link);
  return p;
}

/* Start exe as a child of p: the socket pair, posix_spawn, the parent's end
 * opened as p's pipe. Returns 0 or a libuv error code (nothing to clean). */
static int start_child(crt_proc *p, const char *exe) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return uv_translate_sys_error(errno);
  if (sv[1] == CRT_CHILD_FD) {
    /* dup2 onto itself would leave close-on-exec set. */
    int d = fcntl(sv[1], F_DUPFD_CLOEXEC, CRT_CHILD_FD + 1);
    close(sv[1]);
    sv[1] = d;
    if (d < 0) {
      int e = errno;
      close(sv[0]);
      return uv_translate_sys_error(e);
    }
  }
  char ppid[24];
  snprintf(ppid, sizeof ppid, "%ld", (long)getpid());
  /* argv[0] is for ps and top: the real path rather than /proc/self/exe. */
  char self[PATH_MAX];
  const char *name = exe;
  if (strcmp(exe, "/proc/self/exe") == 0) {
    ssize_t k = readlink(exe, self, sizeof self - 1);
    if (k > 0) {
      self[k] = 0;
      name = self;
    }
  }
  char *args[] = {(char *)name, CRT_CHILD_FLAG, ppid, NULL};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&at);
  /* stdin: /dev/null (a child must not compete for the terminal); stdout
   * and stderr: the parent's; the pipe on CRT_CHILD_FD. Signals as libuv
   * sets them for its children: default actions, nothing blocked. */
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, sv[1], CRT_CHILD_FD);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  sigdelset(&all, SIGKILL);
  sigdelset(&all, SIGSTOP);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &all);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = 0;
  /* A bare name ("crt") is looked up in PATH, as a shell would. */
  int e = strchr(exe, '/') ? posix_spawn(&pid, exe, &fa, &at, args, environ)
                           : posix_spawnp(&pid, exe, &fa, &at, args, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  close(sv[1]);
  if (e) {
    close(sv[0]);
    return uv_translate_sys_error(e);
  }
  p->pid = (int)pid;
  uv_pipe_init(crt_rt_loop(p->ep.rt), &p->ep.ipc.pipe, 0);
  p->ep.ipc.pipe.data = &p->ep.ipc;
  e = uv_pipe_open(&p->ep.ipc.pipe, sv[0]);
  if (e) {
    /* Cannot happen with a fresh socket; do not leave the child behind. */
    close(sv[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return e;
  }
  p->refs++; /* the pipe, until its close callback */
  return 0;
}

int crt_proc_start(crt_proc *p, const char *exe) {
  int e = start_child(p, exe);
  if (e) {
    p->exited = p->done = p->observed = 1;
    return e;
  }
  p->mgr->nrunning++;
  p->ep.started = 1;
  crt_ipc_start(&p->ep.ipc, &crt_proc_parent_ops, &p->ep);
  /* A write error here means the child is already gone: await says why. */
  crt_ipc_end(&p->ep.ipc, CRT_IPC_CALL);
  return 0;
}
