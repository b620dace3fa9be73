/*
 * The pod sandbox's process (image localhost/mcp-health/pause:3.10).
 *
 * It holds the pod's namespaces open and does nothing else: it blocks in
 * pause(), exits 0 on SIGINT or SIGTERM, and reaps children on SIGCHLD, since
 * with a shared PID namespace it is PID 1 and inherits every orphan.
 *
 * Built static (gcc -static -Os) so the image needs nothing but this binary.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define VERSION "3.10"

static void on_stop(int signo) {
    (void)signo;
    /* _exit is async-signal-safe; there is nothing to flush or clean up. */
    _exit(0);
}

static void on_child(int signo) {
    (void)signo;
    /* One SIGCHLD may stand for several exits: reap until none is left, and
     * keep the interrupted code's errno. */
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int handle(int signo, void (*handler)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigemptyset(&action.sa_mask);
    action.sa_handler = handler;
    action.sa_flags = flags;
    return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("pause %s\n", VERSION);
        return 0;
    }
    if (getpid() != 1) {
        /* Still useful (namespaces are held), but orphans go elsewhere. */
        fprintf(stderr, "pause: warning: not PID 1, orphans are not reaped here\n");
    }
    if (handle(SIGINT, on_stop, 0) < 0 || handle(SIGTERM, on_stop, 0) < 0 ||
        handle(SIGCHLD, on_child, SA_NOCLDSTOP | SA_RESTART) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
