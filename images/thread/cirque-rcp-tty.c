/*
 * cirque-rcp-tty: a serial line to a simulated radio co-processor.
 *
 *     cirque-rcp-tty LINK COMMAND [ARG...]
 *
 * Makes a pseudo-terminal pair, puts its slave side in raw mode, links LINK (such as
 * /dev/ttyUSB0) to the slave and runs COMMAND (such as `ot-rcp -Lot-radio0 7`) with its
 * standard input and output on the master side. Whatever opens LINK then talks to COMMAND
 * as to a chip on a UART: a Thread host (ot-daemon, otbr-agent, wpantund) speaks spinel
 * over HDLC to OpenThread's simulated RCP, which speaks it on its standard streams.
 *
 * It keeps a descriptor of the slave open itself, so the master never sees a hangup when
 * the host closes the line and opens it again (a restarted daemon): the RCP lives on.
 * A stale link of an earlier run is replaced; anything else at LINK is left alone and
 * refused. It ends when COMMAND ends, removing its link, with COMMAND's exit status, and
 * passes SIGTERM, SIGINT and SIGHUP on to COMMAND. It needs no privilege beyond writing
 * LINK's directory. Each error is one line on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

static const char *program = "cirque-rcp-tty";
static volatile sig_atomic_t child = 0;

static void forward(int signal_number)
{
    if (child > 0) {
        kill(child, signal_number);
    }
}

static int fail(const char *what, const char *detail, const char *hint)
{
    fprintf(stderr, "%s: %s: %s; %s\n", program, what, detail, hint);
    return 1;
}

/* Point LINK at TARGET: a new link, or one that replaces an earlier (stale) link. */
static int make_link(const char *link, const char *target)
{
    struct stat existing;
    char staged[PATH_MAX];

    if (lstat(link, &existing) == 0 && !S_ISLNK(existing.st_mode)) {
        return fail(link, "exists and is not a symbolic link",
                    "remove it or give another path for the serial line");
    }
    if (snprintf(staged, sizeof staged, "%s.%ld.new", link, (long)getpid()) >= (int)sizeof staged) {
        return fail(link, "path too long", "give a shorter path for the serial line");
    }
    unlink(staged);
    if (symlink(target, staged) != 0 || rename(staged, link) != 0) {
        int error = errno;
        unlink(staged);
        return fail(link, strerror(error),
                    "the serial line's directory must be writable (run as root in the node)");
    }
    return 0;
}

/* Remove LINK if it still points at TARGET (a later run may have taken it over). */
static void remove_link(const char *link, const char *target)
{
    char found[PATH_MAX];
    ssize_t length = readlink(link, found, sizeof found - 1);

    if (length >= 0) {
        found[length] = '\0';
        if (strcmp(found, target) == 0) {
            unlink(link);
        }
    }
}

int main(int argc, char **argv)
{
    const char *link;
    char slave_name[PATH_MAX];
    struct termios raw;
    struct sigaction action;
    sigset_t forwarded, previous;
    int master, slave, status;
    pid_t pid;

    if (argc < 3) {
        fprintf(stderr,
                "%s: usage: %s LINK COMMAND [ARG...]; e.g. %s /dev/ttyUSB0 ot-rcp -Lot-radio0 1\n",
                program, program, program);
        return 2;
    }
    link = argv[1];

    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 ||
        ptsname_r(master, slave_name, sizeof slave_name) != 0) {
        return fail("cannot make a pseudo-terminal", strerror(errno),
                    "the node needs /dev/ptmx and /dev/pts (every container has them)");
    }
    slave = open(slave_name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0) {
        return fail(slave_name, strerror(errno), "check the node's /dev/pts");
    }
    /* Raw both ways: bytes pass untouched, as on a UART (no echo, no line editing). */
    if (tcgetattr(slave, &raw) != 0) {
        return fail(slave_name, strerror(errno), "check the node's /dev/pts");
    }
    cfmakeraw(&raw);
    if (tcsetattr(slave, TCSANOW, &raw) != 0) {
        return fail(slave_name, strerror(errno), "check the node's /dev/pts");
    }
    if (make_link(link, slave_name) != 0) {
        return 1;
    }

    memset(&action, 0, sizeof action);
    action.sa_handler = forward;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    /* Held until the radio's pid is known, so none of them is lost in between. */
    sigemptyset(&forwarded);
    sigaddset(&forwarded, SIGTERM);
    sigaddset(&forwarded, SIGINT);
    sigaddset(&forwarded, SIGHUP);
    sigprocmask(SIG_BLOCK, &forwarded, &previous);

    pid = fork();
    if (pid < 0) {
        int error = errno;
        sigprocmask(SIG_SETMASK, &previous, NULL);
        remove_link(link, slave_name);
        return fail("cannot start the radio", strerror(error), "the node is short of processes");
    }
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        sigprocmask(SIG_SETMASK, &previous, NULL);
        if (dup2(master, STDIN_FILENO) < 0 || dup2(master, STDOUT_FILENO) < 0) {
            fail("cannot hand the line to the radio", strerror(errno), "report this");
            _exit(126);
        }
        if (master > STDOUT_FILENO) {
            close(master);
        }
        execvp(argv[2], argv + 2);
        fail(argv[2], strerror(errno), "give the radio program's path (ot-rcp)");
        _exit(127);
    }
    child = pid;
    sigprocmask(SIG_SETMASK, &previous, NULL);
    /* Only the radio holds the master: when it ends, the host reading LINK sees it go. */
    close(master);

    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = 1 << 8;
            break;
        }
    }
    remove_link(link, slave_name);
    close(slave);
    if (WIFSIGNALED(status)) {
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}
