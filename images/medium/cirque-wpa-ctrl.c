/*
 * cirque-wpa-ctrl: the wpa_supplicant control socket of a simulated WiFi station, served
 * inside the station's own node.
 *
 * The station itself lives in the home's WiFi medium, another container. wpa_cli binds its
 * reply socket in the node's filesystem, so only a process in the node can answer it: this
 * one. It binds the datagram socket wpa_supplicant would (/var/run/wpa_supplicant/wlan0),
 * connects to the medium over a stream socket on the home's read-only radio volume,
 * presents the station's token, and then only forwards, both ways:
 *
 *   a client's datagram  -> one DATAGRAM frame (the client's address, the datagram)
 *   a DATAGRAM frame     -> one sendto() to the address it names
 *   a failed sendto()    -> one FAILED frame (the address, "<errno> <text>")
 *
 * A frame is: type (1 byte), address length (u16), payload length (u32), both big-endian,
 * then the address (sun_path bytes exactly as recvfrom() gave them, abstract names
 * included) and the payload. The medium decides everything; this program understands
 * nothing of what it carries, holds no capability and exits when the medium hangs up.
 *
 * Options follow wpa_supplicant's where they mean the same (-i, -C); the rest are long
 * options, so wpa_supplicant's own flags stay free.
 *
 * Run under other names (argv[0]), the same binary is the node's WiFi tools, because
 * device software and test scripts call those by name (see cirque-wifi-tools.c):
 *   wpa_supplicant  this relay, started the way wpa_supplicant is (-B -i -c -f -t -d -P),
 *                   which gives the station the configuration file's networks, logs its
 *                   events and takes them back when stopped;
 *   iw, iwlist      scan results and link state, in those tools' formats, asked of the
 *                   control socket like any other client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define PROGRAM "cirque-wpa-ctrl"
/* wpa_ctrl's limit: longer datagrams are refused, not cut. */
#define MAX_DATAGRAM 4096
#define MAX_ADDRESS ((int)sizeof(((struct sockaddr_un *)0)->sun_path))
#define HEADER 7
#define MAX_FRAME (HEADER + MAX_ADDRESS + MAX_DATAGRAM)
#define MAX_TOKEN 128
/* How long the medium may take to accept the token. */
#define HELLO_TIMEOUT_MS 10000

/* FRAME_CONFIG (medium -> relay): a client asked SAVE_CONFIG; the payload is the network
 * blocks to write, the address the client's, which gets the OK or FAIL. */
enum {
    FRAME_HELLO = 'H',
    FRAME_ACCEPTED = 'A',
    FRAME_DATAGRAM = 'D',
    FRAME_FAILED = 'F',
    FRAME_CONFIG = 'C'
};

struct options {
    const char *ifname;     /* -i: the interface, the socket's name */
    const char *ctrl_dir;   /* -C: the directory of control sockets */
    const char *medium;     /* --medium: the medium's stations socket */
    const char *token_file; /* --token-file: the station's token (root-only file) */
};

struct frame {
    int type;
    const unsigned char *address;
    size_t address_len;
    const unsigned char *payload;
    size_t payload_len;
};

/* What a stream read has gathered but not yet parsed. */
struct inbox {
    unsigned char data[MAX_FRAME];
    size_t used;
};

static volatile sig_atomic_t stopping;
/* How long relay() waits for anything before it returns (-1: for ever). */
static int relay_timeout_ms = -1;
/* Set by the wpa_supplicant front-end: what it does besides relaying. */
struct supplicant;
static struct supplicant *front_end;
static int front_end_datagram(int medium, const struct frame *frame);
static int front_end_save(int ctrl, int medium, const struct frame *frame);
static char ctrl_path[MAX_ADDRESS + 1];
static struct stat ctrl_identity;
static int ctrl_bound;

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void usage(void) {
    fprintf(stderr,
            "usage: " PROGRAM " [-i IFNAME] [-C CTRL_DIR] --medium SOCKET --token-file FILE\n"
            "  serves CTRL_DIR/IFNAME (default /var/run/wpa_supplicant/wlan0) for the\n"
            "  station of the WiFi medium at SOCKET that FILE's token names\n");
}

static int parse_options(int argc, char **argv, struct options *opt) {
    static const struct option longs[] = {
        {"medium", required_argument, NULL, 'M'},
        {"token-file", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opt->ifname = "wlan0";
    opt->ctrl_dir = "/var/run/wpa_supplicant";
    opt->medium = "/run/cirque-radio/stations.sock";
    opt->token_file = NULL;
    while ((c = getopt_long(argc, argv, "i:C:h", longs, NULL)) != -1) {
        switch (c) {
        case 'i': opt->ifname = optarg; break;
        case 'C': opt->ctrl_dir = optarg; break;
        case 'M': opt->medium = optarg; break;
        case 'T': opt->token_file = optarg; break;
        default: return -1;
        }
    }
    if (optind != argc || !opt->token_file || !*opt->ifname || strchr(opt->ifname, '/'))
        return -1;
    return 0;
}

static int fail(const char *what, const char *where, const char *todo) {
    fprintf(stderr, PROGRAM ": %s %s: %s; %s\n", what, where, strerror(errno), todo);
    return -1;
}

/* The token, without surrounding whitespace, from a file only root can read. */
static int read_token(const char *path, char *token) {
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail("cannot read the token file", path, "the station driver writes it");
    n = read(fd, token, MAX_TOKEN);
    close(fd);
    if (n < 0)
        return fail("cannot read the token file", path, "the station driver writes it");
    while (n > 0 && (token[n - 1] == '\n' || token[n - 1] == ' ' || token[n - 1] == '\r'))
        n--;
    token[n] = '\0';
    if (n == 0 || n >= MAX_TOKEN) {
        fprintf(stderr, PROGRAM ": token file %s holds no token (1..%d bytes)\n", path,
                MAX_TOKEN - 1);
        return -1;
    }
    return 0;
}

/* mkdir -p of the socket's directory; the last component gets wpa_supplicant's 0770. */
static int make_directory(const char *dir) {
    char path[MAX_ADDRESS + 1];
    size_t i, len = strlen(dir);
    if (len >= sizeof(path)) {
        errno = ENAMETOOLONG;
        return fail("cannot create directory", dir, "use a shorter -C");
    }
    memcpy(path, dir, len + 1);
    for (i = 1; i < len; i++) {
        if (path[i] != '/')
            continue;
        path[i] = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return fail("cannot create directory", path, "check the node's filesystem");
        path[i] = '/';
    }
    if (mkdir(path, 0770) == 0) {
        if (chmod(path, 0770) < 0)
            return fail("cannot set the mode of", path, "check the node's filesystem");
    } else if (errno != EEXIST) {
        return fail("cannot create directory", path, "check the node's filesystem");
    }
    return 0;
}

static socklen_t unix_address(struct sockaddr_un *sa, const char *path) {
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    strncpy(sa->sun_path, path, sizeof(sa->sun_path) - 1);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1);
}

/* Bind the control socket; a leftover nobody serves is replaced, a live one is not. */
static int serve_ctrl(const struct options *opt) {
    struct sockaddr_un sa;
    socklen_t len;
    int fd, probe, retried = 0;
    if ((size_t)snprintf(ctrl_path, sizeof(ctrl_path), "%s/%s", opt->ctrl_dir, opt->ifname) >=
        sizeof(ctrl_path) - 1) {
        fprintf(stderr, PROGRAM ": %s/%s is too long for a socket address (%d bytes)\n",
                opt->ctrl_dir, opt->ifname, MAX_ADDRESS - 1);
        return -1;
    }
    if (make_directory(opt->ctrl_dir) < 0)
        return -1;
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return fail("cannot create a socket for", ctrl_path, "check the node's limits");
    len = unix_address(&sa, ctrl_path);
    while (bind(fd, (struct sockaddr *)&sa, len) < 0) {
        if (errno != EADDRINUSE || retried++)
            return fail("cannot bind", ctrl_path, "check the node's filesystem");
        probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, len) == 0) {
            close(probe);
            fprintf(stderr, PROGRAM ": %s is served by another process; stop the "
                            "wpa_supplicant there or use another interface name\n", ctrl_path);
            return -1;
        }
        if (probe >= 0)
            close(probe);
        unlink(ctrl_path); /* left by a process that died */
    }
    if (chmod(ctrl_path, 0770) < 0 || lstat(ctrl_path, &ctrl_identity) < 0)
        return fail("cannot set the mode of", ctrl_path, "check the node's filesystem");
    ctrl_bound = 1;
    return fd;
}

/* Remove our socket file, unless someone else's has taken its name. */
static void unserve_ctrl(void) {
    struct stat now;
    if (ctrl_bound && lstat(ctrl_path, &now) == 0 && now.st_dev == ctrl_identity.st_dev &&
        now.st_ino == ctrl_identity.st_ino)
        unlink(ctrl_path);
}

static int write_all(int fd, const unsigned char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int send_frame(int medium, int type, const void *address, size_t address_len,
                      const void *payload, size_t payload_len) {
    unsigned char out[MAX_FRAME];
    if (address_len > (size_t)MAX_ADDRESS || payload_len > MAX_DATAGRAM)
        return 0; /* cannot happen: both come from fixed buffers */
    out[0] = (unsigned char)type;
    out[1] = (unsigned char)(address_len >> 8);
    out[2] = (unsigned char)address_len;
    out[3] = (unsigned char)(payload_len >> 24);
    out[4] = (unsigned char)(payload_len >> 16);
    out[5] = (unsigned char)(payload_len >> 8);
    out[6] = (unsigned char)payload_len;
    if (address_len)
        memcpy(out + HEADER, address, address_len);
    if (payload_len)
        memcpy(out + HEADER + address_len, payload, payload_len);
    return write_all(medium, out, HEADER + address_len + payload_len);
}

/* The next whole frame in the inbox: 1, 0 when more bytes are needed, -1 when malformed. */
static int next_frame(const struct inbox *in, struct frame *frame) {
    size_t address_len, payload_len;
    if (in->used < HEADER)
        return 0;
    address_len = ((size_t)in->data[1] << 8) | in->data[2];
    payload_len = ((size_t)in->data[3] << 24) | ((size_t)in->data[4] << 16) |
                  ((size_t)in->data[5] << 8) | in->data[6];
    if (address_len > (size_t)MAX_ADDRESS || payload_len > MAX_DATAGRAM)
        return -1;
    if (in->used < HEADER + address_len + payload_len)
        return 0;
    frame->type = in->data[0];
    frame->address = in->data + HEADER;
    frame->address_len = address_len;
    frame->payload = in->data + HEADER + address_len;
    frame->payload_len = payload_len;
    return 1;
}

static void consume(struct inbox *in, const struct frame *frame) {
    size_t size = HEADER + frame->address_len + frame->payload_len;
    memmove(in->data, in->data + size, in->used - size);
    in->used -= size;
}

/* Read what the medium sent: 1 read something, 0 it hung up, -1 error. */
static int fill(int medium, struct inbox *in) {
    ssize_t n = read(medium, in->data + in->used, sizeof(in->data) - in->used);
    if (n < 0)
        return (errno == EINTR || errno == EAGAIN) ? 1 : -1;
    in->used += (size_t)n;
    return n > 0;
}

/* Connect to the medium and present the token; the connected socket once accepted. */
static int connect_medium(const struct options *opt, const char *token, struct inbox *in) {
    struct sockaddr_un sa;
    struct pollfd pfd;
    struct frame frame;
    int fd, got;
    if (strlen(opt->medium) >= sizeof(sa.sun_path)) {
        fprintf(stderr, PROGRAM ": medium socket path %s is too long\n", opt->medium);
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return fail("cannot create a socket for", opt->medium, "check the node's limits");
    if (connect(fd, (struct sockaddr *)&sa, unix_address(&sa, opt->medium)) < 0) {
        fail("cannot reach the WiFi medium at", opt->medium, "is the home's medium running?");
        close(fd);
        return -1;
    }
    if (send_frame(fd, FRAME_HELLO, NULL, 0, token, strlen(token)) < 0) {
        fail("cannot write to the WiFi medium at", opt->medium, "is it running?");
        close(fd);
        return -1;
    }
    pfd.fd = fd;
    pfd.events = POLLIN;
    for (;;) {
        got = next_frame(in, &frame);
        if (got > 0 && frame.type == FRAME_ACCEPTED) {
            consume(in, &frame);
            return fd;
        }
        if (got != 0 || poll(&pfd, 1, HELLO_TIMEOUT_MS) <= 0 || fill(fd, in) <= 0)
            break;
    }
    fprintf(stderr, PROGRAM ": the WiFi medium did not accept the token of %s; the "
                    "station is gone or the token is stale (restart the station)\n",
            opt->token_file);
    close(fd);
    return -1;
}

/* A client's datagram, with its address, to the medium. 0 on success, -1 on error. */
static int forward_datagram(int ctrl, int medium) {
    unsigned char data[MAX_DATAGRAM + 1];
    struct sockaddr_un from;
    socklen_t from_len = sizeof(from);
    size_t address_len;
    ssize_t n = recvfrom(ctrl, data, sizeof(data), MSG_TRUNC | MSG_DONTWAIT,
                         (struct sockaddr *)&from, &from_len);
    if (n < 0)
        return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    if (n > MAX_DATAGRAM) {
        fprintf(stderr, PROGRAM ": a %zd-byte datagram dropped (over %d)\n", n, MAX_DATAGRAM);
        return 0;
    }
    address_len = from_len > offsetof(struct sockaddr_un, sun_path)
                      ? from_len - offsetof(struct sockaddr_un, sun_path)
                      : 0;
    if (address_len > (size_t)MAX_ADDRESS)
        address_len = MAX_ADDRESS;
    return send_frame(medium, FRAME_DATAGRAM, from.sun_path, address_len, data, (size_t)n);
}

/* A frame from the medium: a datagram to send to a client. A client that is gone is
 * reported back, so the medium stops sending to it. */
static int deliver(int ctrl, int medium, const struct frame *frame) {
    struct sockaddr_un to;
    char reason[64];
    int len;
    if (frame->type == FRAME_CONFIG)
        return front_end_save(ctrl, medium, frame);
    if (frame->type != FRAME_DATAGRAM || frame->address_len == 0)
        return 0; /* nothing this relay knows how to deliver */
    if (front_end && front_end_datagram(medium, frame))
        return 0; /* the front-end's own reply or event */
    memset(&to, 0, sizeof(to));
    to.sun_family = AF_UNIX;
    memcpy(to.sun_path, frame->address, frame->address_len);
    if (sendto(ctrl, frame->payload, frame->payload_len, MSG_DONTWAIT | MSG_NOSIGNAL,
               (struct sockaddr *)&to,
               (socklen_t)(offsetof(struct sockaddr_un, sun_path) + frame->address_len)) >= 0)
        return 0;
    len = snprintf(reason, sizeof(reason), "%d %s", errno, strerror(errno));
    return send_frame(medium, FRAME_FAILED, frame->address, frame->address_len, reason,
                      (size_t)len < sizeof(reason) ? (size_t)len : sizeof(reason) - 1);
}

/* Forward both ways until the medium hangs up (0) or something breaks (1). */
static int relay(int ctrl, int medium, struct inbox *in) {
    struct pollfd fds[2] = {{ctrl, POLLIN, 0}, {medium, POLLIN, 0}};
    struct frame frame;
    int got;
    while (!stopping) {
        while ((got = next_frame(in, &frame)) > 0) {
            if (deliver(ctrl, medium, &frame) < 0)
                return 0; /* the medium went away while we answered it */
            consume(in, &frame);
        }
        if (got < 0) {
            fprintf(stderr, PROGRAM ": the medium sent a malformed frame; stopping\n");
            return 1;
        }
        if (stopping)
            break; /* what was read finished the front-end's exchange */
        got = poll(fds, 2, relay_timeout_ms);
        if (got == 0)
            return 0;
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return 1;
        }
        if (fds[1].revents) {
            got = fill(medium, in);
            if (got == 0)
                return 0; /* the medium closed the station: we are done */
            if (got < 0)
                return 1;
        }
        if ((fds[0].revents & POLLIN) && forward_datagram(ctrl, medium) < 0)
            return 0;
    }
    return 0;
}

static int relay_main(int argc, char **argv) {
    static struct inbox in;
    struct options opt;
    struct sigaction sa;
    char token[MAX_TOKEN + 1];
    int ctrl, medium, status;

    if (parse_options(argc, argv, &opt) < 0) {
        usage();
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (read_token(opt.token_file, token) < 0)
        return 1;
    ctrl = serve_ctrl(&opt);
    if (ctrl < 0)
        return 1;
    medium = connect_medium(&opt, token, &in);
    memset(token, 0, sizeof(token));
    if (medium < 0) {
        unserve_ctrl();
        return 1;
    }
    printf(PROGRAM ": serving %s\n", ctrl_path);
    fflush(stdout);
    status = relay(ctrl, medium, &in);
    unserve_ctrl();
    return status;
}

#include "cirque-wifi-tools.c"
