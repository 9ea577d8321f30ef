/*
 * The node's WiFi tools, part of cirque-wpa-ctrl (included by it: one static binary, so
 * one file in the radio volume serves every name).
 *
 * wpa_supplicant: the relay of cirque-wpa-ctrl, started with wpa_supplicant's options.
 *   Device software restarts WiFi the way it always has (append a network with
 *   wpa_passphrase, killall wpa_supplicant, start it again), so this process reads the
 *   configuration file and hands its networks to the station over the relayed connection
 *   with the control interface's own commands, from an address no client has (a tag,
 *   never bound). It attaches as a monitor there too, so the station's events reach its
 *   -f log. Stopped (SIGTERM), it disconnects the station and removes its networks, as
 *   the real one does when it exits. SAVE_CONFIG arrives as a FRAME_CONFIG with the
 *   network blocks: the medium has the networks, only the node has the file.
 *
 * iw, iwlist: scan results and link state in those tools' formats, asked of the control
 *   socket (/var/run/wpa_supplicant/IFNAME) like any wpa_ctrl client.
 */
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <time.h>

#define MAX_NETWORKS 32
#define MAX_VARIABLES 24
#define MAX_LINE 1024
#define MAX_PENDING 512
#define MAX_COMMAND 1100
/* How long a stopping front-end waits for the station to let go. */
#define STOP_TIMEOUT_MS 3000
/* How long a starting front-end waits for the one it replaces to go away. */
#define REPLACE_TIMEOUT_MS 5000
/* How long the tools wait for a reply, and for a scan. */
#define TOOL_REPLY_TIMEOUT_MS 5000
#define TOOL_SCAN_TIMEOUT_MS 10000

/* wpa_supplicant's debug levels: a monitor gets events at its level and above. */
enum { MSG_EXCESSIVE, MSG_MSGDUMP, MSG_DEBUG, MSG_INFO, MSG_WARNING, MSG_ERROR };

struct variable {
    char *name;
    char *value;
};

struct network {
    struct variable vars[MAX_VARIABLES];
    int count;
    int disabled;
};

struct supplicant {
    const char *ifname;
    const char *conf;
    const char *logfile;
    const char *pidfile;
    const char *ctrl_dir_option;
    const char *medium;
    const char *token_file;
    int background;
    int timestamps;
    int debug_level;
    int update_config;
    char ctrl_dir[MAX_ADDRESS + 1];
    /* The file's lines outside network blocks, kept for SAVE_CONFIG. */
    char *globals;
    size_t globals_len;
    struct network networks[MAX_NETWORKS];
    int network_count;
    FILE *log;
    /* Our own commands whose replies are still to come, in order. */
    char pending[MAX_PENDING][MAX_COMMAND];
    int pending_head, pending_count;
    int stop_phase;
    unsigned char self_address[64];
    size_t self_address_len;
};

static struct supplicant the_supplicant;

static const char *base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* --- the -f log -------------------------------------------------------------------- */

static void log_line(struct supplicant *s, const char *fmt, ...) {
    va_list args;
    struct timeval now;
    if (!s->log)
        return;
    if (s->timestamps) {
        gettimeofday(&now, NULL);
        fprintf(s->log, "%ld.%06ld: ", (long)now.tv_sec, (long)now.tv_usec);
    }
    va_start(args, fmt);
    vfprintf(s->log, fmt, args);
    va_end(args);
    fputc('\n', s->log);
    fflush(s->log);
}

/* A command for the log: a psk's value is not written there. */
static void log_command(struct supplicant *s, const char *command, const char *reply) {
    char shown[MAX_COMMAND];
    const char *psk = strstr(command, " psk ");
    if (strncmp(command, "SET_NETWORK ", 12) == 0 && psk) {
        snprintf(shown, sizeof(shown), "%.*s psk [REMOVED]", (int)(psk - command), command);
        command = shown;
    }
    log_line(s, "%s: Control interface command '%s' -> %s", s->ifname, command, reply);
}

/* --- the configuration file --------------------------------------------------------- */

static char *trim(char *text) {
    char *end;
    while (*text == ' ' || *text == '\t')
        text++;
    end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' ||
                          end[-1] == '\t'))
        *--end = '\0';
    return text;
}

static int keep_global(struct supplicant *s, const char *line) {
    size_t len = strlen(line);
    char *grown = realloc(s->globals, s->globals_len + len + 2);
    if (!grown)
        return -1;
    s->globals = grown;
    memcpy(s->globals + s->globals_len, line, len);
    s->globals_len += len;
    s->globals[s->globals_len++] = '\n';
    s->globals[s->globals_len] = '\0';
    return 0;
}

/* ctrl_interface=/path or ctrl_interface=DIR=/path GROUP=name: the directory. */
static void set_ctrl_dir(struct supplicant *s, const char *value) {
    const char *dir = value;
    size_t len;
    if (strncmp(value, "DIR=", 4) == 0)
        dir = value + 4;
    len = strcspn(dir, " \t");
    if (len == 0 || len >= sizeof(s->ctrl_dir))
        return;
    memcpy(s->ctrl_dir, dir, len);
    s->ctrl_dir[len] = '\0';
}

static int config_error(const char *path, int line, const char *what) {
    fprintf(stderr, "Line %d: %s in %s; fix the file (wpa_supplicant.conf syntax)\n", line,
            what, path);
    return -1;
}

/* Read CONF: the globals this program uses and every network block. */
static int read_config(struct supplicant *s) {
    char buffer[MAX_LINE];
    struct network *network = NULL;
    int number = 0;
    FILE *file = fopen(s->conf, "r");
    if (!file) {
        fprintf(stderr, "Failed to open config file '%s', error: %s\n", s->conf,
                strerror(errno));
        return -1;
    }
    while (fgets(buffer, sizeof(buffer), file)) {
        char *line = trim(buffer), *equals;
        number++;
        if (!network && strcmp(line, "network={") == 0) {
            if (s->network_count == MAX_NETWORKS) {
                fclose(file);
                return config_error(s->conf, number, "more than 32 networks");
            }
            network = &s->networks[s->network_count++];
            continue;
        }
        if (!network) {
            if (keep_global(s, buffer) < 0) {
                fclose(file);
                return config_error(s->conf, number, "out of memory");
            }
            if (strncmp(line, "ctrl_interface=", 15) == 0)
                set_ctrl_dir(s, line + 15);
            else if (strncmp(line, "update_config=", 14) == 0)
                s->update_config = atoi(line + 14) != 0;
            continue;
        }
        if (*line == '\0' || *line == '#')
            continue;
        if (strcmp(line, "}") == 0) {
            network = NULL;
            continue;
        }
        equals = strchr(line, '=');
        if (!equals || equals == line) {
            fclose(file);
            return config_error(s->conf, number, "a network line without name=value");
        }
        *equals = '\0';
        if (strcmp(line, "disabled") == 0) {
            network->disabled = atoi(equals + 1) != 0;
            continue;
        }
        if (network->count == MAX_VARIABLES) {
            fclose(file);
            return config_error(s->conf, number, "more than 24 variables in a network");
        }
        network->vars[network->count].name = strdup(line);
        network->vars[network->count].value = strdup(equals + 1);
        network->count++;
    }
    fclose(file);
    if (network)
        return config_error(s->conf, number, "a network block without its closing '}'");
    return 0;
}

/* SAVE_CONFIG: the globals as read, then the station's networks, replaced atomically. */
static int write_config(struct supplicant *s, const unsigned char *blocks, size_t len) {
    char temporary[4096];
    FILE *file;
    int ok;
    snprintf(temporary, sizeof(temporary), "%s.tmp", s->conf);
    file = fopen(temporary, "w");
    if (!file)
        return -1;
    ok = fwrite(s->globals ? s->globals : "", 1, s->globals_len, file) == s->globals_len &&
         fwrite(blocks, 1, len, file) == len;
    ok = (fclose(file) == 0) && ok;
    if (!ok || rename(temporary, s->conf) < 0) {
        unlink(temporary);
        return -1;
    }
    return 0;
}

/* --- talking to the station -------------------------------------------------------- */

static int command(int medium, struct supplicant *s, const char *fmt, ...) {
    va_list args;
    char *slot;
    int len;
    if (s->pending_count == MAX_PENDING)
        return -1;
    slot = s->pending[(s->pending_head + s->pending_count) % MAX_PENDING];
    va_start(args, fmt);
    len = vsnprintf(slot, MAX_COMMAND, fmt, args);
    va_end(args);
    if (len < 0 || len >= MAX_COMMAND)
        return -1;
    s->pending_count++;
    return send_frame(medium, FRAME_DATAGRAM, s->self_address, s->self_address_len, slot,
                      (size_t)len);
}

/* Give the station the file's networks (ids follow from REMOVE_NETWORK all), be a
 * monitor at the -d level, and end a hold a stopped front-end left. */
static int start_station(int medium, struct supplicant *s) {
    int i, j, failed = 0;
    failed |= command(medium, s, "ATTACH");
    failed |= command(medium, s, "LEVEL %d", s->debug_level);
    failed |= command(medium, s, "REMOVE_NETWORK all");
    for (i = 0; i < s->network_count; i++) {
        struct network *network = &s->networks[i];
        failed |= command(medium, s, "ADD_NETWORK");
        for (j = 0; j < network->count; j++)
            failed |= command(medium, s, "SET_NETWORK %d %s %s", i, network->vars[j].name,
                              network->vars[j].value);
        if (!network->disabled)
            failed |= command(medium, s, "ENABLE_NETWORK %d", i);
    }
    failed |= command(medium, s, "RECONNECT");
    return failed ? -1 : 0;
}

/* What comes to our own address: an event (to the log) or a reply to our command. */
static int front_end_datagram(int medium, const struct frame *frame) {
    struct supplicant *s = front_end;
    char text[MAX_DATAGRAM + 1];
    const char *body = text;
    (void)medium;
    if (frame->address_len != s->self_address_len ||
        memcmp(frame->address, s->self_address, s->self_address_len) != 0)
        return 0;
    memcpy(text, frame->payload, frame->payload_len);
    text[frame->payload_len] = '\0';
    if (text[0] == '<') {
        const char *end = strchr(text, '>');
        body = end ? end + 1 : text;
        log_line(s, "%s: %s", s->ifname, body);
        return 1;
    }
    if (s->pending_count > 0) {
        const char *sent = s->pending[s->pending_head];
        text[strcspn(text, "\n")] = '\0';
        if (strncmp(text, "FAIL", 4) == 0 || strncmp(text, "UNKNOWN", 7) == 0)
            log_command(s, sent, text);
        s->pending_head = (s->pending_head + 1) % MAX_PENDING;
        s->pending_count--;
        if (s->pending_count == 0)
            stopping = 1; /* the startup or the stop is through: relay() returns */
    }
    return 1;
}

static int front_end_save(int ctrl, int medium, const struct frame *frame) {
    struct frame reply = {FRAME_DATAGRAM, frame->address, frame->address_len, NULL, 0};
    const char *answer = "FAIL\n";
    if (front_end && front_end->update_config &&
        write_config(front_end, frame->payload, frame->payload_len) == 0)
        answer = "OK\n";
    if (front_end)
        log_line(front_end, "%s: SAVE_CONFIG %s -> %.*s", front_end->ifname, front_end->conf,
                 (int)strlen(answer) - 1, answer);
    if (frame->address_len == 0)
        return 0;
    reply.payload = (const unsigned char *)answer;
    reply.payload_len = strlen(answer);
    return deliver(ctrl, medium, &reply);
}

/* --- the wpa_supplicant front-end ----------------------------------------------------- */

static void supplicant_usage(void) {
    fprintf(stderr,
            "usage: wpa_supplicant [-BdtK] -i IFNAME -c CONF [-C CTRL_DIR] [-D DRIVER] "
            "[-f LOGFILE] [-P PIDFILE]\n"
            "  this node's wpa_supplicant drives its simulated WiFi station; the other\n"
            "  options of the real one are not supported\n");
}

static int parse_supplicant(int argc, char **argv, struct supplicant *s) {
    static const struct option longs[] = {
        {"medium", required_argument, NULL, 'M'},
        {"token-file", required_argument, NULL, 'T'},
        {NULL, 0, NULL, 0},
    };
    int c;
    s->debug_level = MSG_INFO;
    s->medium = "/run/cirque-radio/stations.sock";
    while ((c = getopt_long(argc, argv, "Bi:c:C:D:f:P:tdqKshu", longs, NULL)) != -1) {
        switch (c) {
        case 'B': s->background = 1; break;
        case 'i': s->ifname = optarg; break;
        case 'c': s->conf = optarg; break;
        case 'C': s->ctrl_dir_option = optarg; break;
        case 'D': break; /* the driver is the simulation's */
        case 'f': s->logfile = optarg; break;
        case 'P': s->pidfile = optarg; break;
        case 't': s->timestamps = 1; break;
        case 'd': if (s->debug_level > MSG_EXCESSIVE) s->debug_level--; break;
        case 'q': if (s->debug_level < MSG_ERROR) s->debug_level++; break;
        case 'K': case 's': case 'u': break; /* key logging, syslog, D-Bus: not here */
        case 'M': s->medium = optarg; break;
        case 'T': s->token_file = optarg; break;
        default: return -1;
        }
    }
    if (optind != argc || !s->ifname || !*s->ifname || strchr(s->ifname, '/')) {
        fprintf(stderr, "wpa_supplicant: give one interface (-i wlan0)\n");
        return -1;
    }
    if (!s->conf) {
        fprintf(stderr, "wpa_supplicant: give the configuration file (-c "
                        "/etc/wpa_supplicant/wpa_supplicant.conf)\n");
        return -1;
    }
    return 0;
}

/* Bind the control socket; a wpa_supplicant still stopping (killall returns at once) is
 * waited for, as a restart script expects the new one to start. */
static int serve_replacing(const struct options *opt) {
    struct sockaddr_un sa;
    socklen_t len;
    char path[MAX_ADDRESS + 1];
    int waited, probe;
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", opt->ctrl_dir, opt->ifname) >=
        sizeof(path))
        return serve_ctrl(opt); /* which says the name is too long */
    len = unix_address(&sa, path);
    for (waited = 0; waited < REPLACE_TIMEOUT_MS; waited += 10) {
        probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (probe < 0 || connect(probe, (struct sockaddr *)&sa, len) < 0) {
            if (probe >= 0)
                close(probe);
            break;
        }
        close(probe);
        poll(NULL, 0, 10);
    }
    return serve_ctrl(opt);
}

static int write_pidfile(const char *path) {
    FILE *file = fopen(path, "w");
    if (!file)
        return -1;
    fprintf(file, "%d\n", (int)getpid());
    return fclose(file);
}

/* After -B: the parent waits for the daemon to be ready, and exits with its outcome. */
static int background_parent(int ready) {
    char outcome = 0;
    ssize_t n;
    do {
        n = read(ready, &outcome, 1);
    } while (n < 0 && errno == EINTR);
    return n == 1 && outcome == '1' ? 0 : 1;
}

static int supplicant_main(int argc, char **argv) {
    static struct inbox in;
    struct supplicant *s = &the_supplicant;
    struct options opt;
    struct sigaction sa;
    char token[MAX_TOKEN + 1], token_path[MAX_ADDRESS + 64];
    int ctrl, medium, status, ready[2] = {-1, -1};
    pid_t child;

    prctl(PR_SET_NAME, "wpa_supplicant", 0, 0, 0);
    if (parse_supplicant(argc, argv, s) < 0) {
        supplicant_usage();
        return 1;
    }
    strcpy(s->ctrl_dir, "/var/run/wpa_supplicant");
    if (read_config(s) < 0)
        return 1;
    if (s->ctrl_dir_option)
        snprintf(s->ctrl_dir, sizeof(s->ctrl_dir), "%s", s->ctrl_dir_option);
    snprintf(token_path, sizeof(token_path), "/var/lib/cirque-wpa-ctrl-%s.token", s->ifname);
    opt.ifname = s->ifname;
    opt.ctrl_dir = s->ctrl_dir;
    opt.medium = s->medium;
    opt.token_file = s->token_file ? s->token_file : token_path;
    if (s->logfile) {
        s->log = fopen(s->logfile, "a");
        if (!s->log) {
            fprintf(stderr, "wpa_supplicant: cannot open the log file %s: %s; give a writable "
                            "-f path\n", s->logfile, strerror(errno));
            return 1;
        }
    } else if (!s->background) {
        s->log = stdout;
    }
    if (s->background) {
        if (pipe(ready) < 0 || (child = fork()) < 0) {
            fprintf(stderr, "wpa_supplicant: cannot start in the background: %s\n",
                    strerror(errno));
            return 1;
        }
        if (child > 0) {
            close(ready[1]);
            return background_parent(ready[0]);
        }
        close(ready[0]);
        setsid();
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);

    s->self_address[0] = '\0';
    s->self_address_len =
        1 + (size_t)snprintf((char *)s->self_address + 1, sizeof(s->self_address) - 1,
                             "cirque-wpa_supplicant-%d", (int)getpid());
    front_end = s;
    if (read_token(opt.token_file, token) < 0)
        return 1;
    ctrl = serve_replacing(&opt);
    if (ctrl < 0)
        return 1;
    medium = connect_medium(&opt, token, &in);
    memset(token, 0, sizeof(token));
    if (medium < 0 || start_station(medium, s) < 0) {
        unserve_ctrl();
        return 1;
    }
    /* Until the station has the networks: a script's next step may ask for them. */
    relay_timeout_ms = TOOL_REPLY_TIMEOUT_MS;
    relay(ctrl, medium, &in);
    relay_timeout_ms = -1;
    if (s->pending_count > 0) {
        fprintf(stderr, "wpa_supplicant: the WiFi medium did not take the networks of %s; "
                        "see the medium's log\n", s->conf);
        unserve_ctrl();
        return 1;
    }
    stopping = 0;
    if (s->pidfile && write_pidfile(s->pidfile) < 0)
        fprintf(stderr, "wpa_supplicant: cannot write the pid file %s: %s\n", s->pidfile,
                strerror(errno));
    log_line(s, "Successfully initialized wpa_supplicant");
    if (s->background) {
        int null = open("/dev/null", O_RDWR);
        printf("Successfully initialized wpa_supplicant\n");
        fflush(stdout);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
            close(null);
        }
        if (write(ready[1], "1", 1) < 0)
            return 1;
        close(ready[1]);
    }
    status = relay(ctrl, medium, &in);
    if (stopping) {
        /* As the real one exits: leave the BSS and forget the networks. */
        stopping = 0;
        s->stop_phase = 1;
        if (command(medium, s, "DISCONNECT") == 0 &&
            command(medium, s, "REMOVE_NETWORK all") == 0) {
            relay_timeout_ms = STOP_TIMEOUT_MS;
            relay(ctrl, medium, &in);
        }
        log_line(s, "%s: CTRL-EVENT-TERMINATING", s->ifname);
        status = 0;
    }
    unserve_ctrl();
    if (s->pidfile)
        unlink(s->pidfile);
    return status;
}

/* --- iw and iwlist: clients of the control socket --------------------------------------- */

struct client {
    int fd;
    char local[MAX_ADDRESS + 1];
};

static int client_open(struct client *c, const char *tool, const char *ifname, int quiet) {
    struct sockaddr_un sa;
    char path[MAX_ADDRESS + 1];
    const char *dir = getenv("WPA_CTRL_DIR"); /* another directory, as wpa_cli's -p */
    snprintf(path, sizeof(path), "%s/%s", dir && *dir ? dir : "/var/run/wpa_supplicant",
             ifname);
    c->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        return -1;
    snprintf(c->local, sizeof(c->local), "/tmp/cirque-%s-%d", tool, (int)getpid());
    unlink(c->local);
    if (bind(c->fd, (struct sockaddr *)&sa, unix_address(&sa, c->local)) < 0 ||
        connect(c->fd, (struct sockaddr *)&sa, unix_address(&sa, path)) < 0) {
        if (!quiet)
            fprintf(stderr, "%s: %s: no WiFi station here (%s: %s); is wpa_supplicant "
                            "running?\n", tool, ifname, path, strerror(errno));
        unlink(c->local);
        close(c->fd);
        return -1;
    }
    return 0;
}

static void client_close(struct client *c) {
    unlink(c->local);
    close(c->fd);
}

/* The next datagram; with events, also events ("<n>..."). 0 when none came in time. */
static int client_receive(struct client *c, char *reply, size_t size, int events, int ms) {
    struct pollfd pfd = {c->fd, POLLIN, 0};
    ssize_t n;
    for (;;) {
        if (poll(&pfd, 1, ms) <= 0)
            return 0;
        n = recv(c->fd, reply, size - 1, 0);
        if (n < 0)
            return 0;
        reply[n] = '\0';
        if (events || reply[0] != '<')
            return 1;
    }
}

static int client_request(struct client *c, const char *cmd, char *reply, size_t size) {
    if (send(c->fd, cmd, strlen(cmd), 0) < 0)
        return -1;
    return client_receive(c, reply, size, 0, TOOL_REPLY_TIMEOUT_MS) ? 0 : -1;
}

/* A fresh scan (the station's own if one runs), then its results. */
static int scan(struct client *c, char *results, size_t size) {
    char reply[MAX_DATAGRAM + 1];
    struct timeval start, now;
    int left = TOOL_SCAN_TIMEOUT_MS;
    if (client_request(c, "ATTACH", reply, sizeof(reply)) < 0 ||
        client_request(c, "SCAN", reply, sizeof(reply)) < 0)
        return -1;
    gettimeofday(&start, NULL);
    while (left > 0 && client_receive(c, reply, sizeof(reply), 1, left)) {
        if (strstr(reply, "CTRL-EVENT-SCAN-RESULTS"))
            break;
        gettimeofday(&now, NULL);
        left = TOOL_SCAN_TIMEOUT_MS - (int)((now.tv_sec - start.tv_sec) * 1000 +
                                             (now.tv_usec - start.tv_usec) / 1000);
    }
    client_request(c, "DETACH", reply, sizeof(reply));
    return client_request(c, "SCAN_RESULTS", results, size);
}

/* A reply's "name=value" line's value, or NULL. */
static const char *value_of(const char *reply, const char *name, char *out, size_t size) {
    size_t len = strlen(name);
    const char *line = reply;
    while (line && *line) {
        if (strncmp(line, name, len) == 0 && line[len] == '=') {
            size_t n = strcspn(line + len + 1, "\n");
            if (n >= size)
                n = size - 1;
            memcpy(out, line + len + 1, n);
            out[n] = '\0';
            return out;
        }
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return NULL;
}

static int channel_of(int mhz) {
    if (mhz == 2484)
        return 14;
    if (mhz >= 2412 && mhz <= 2472)
        return (mhz - 2407) / 5;
    if (mhz >= 5000 && mhz < 5900)
        return (mhz - 5000) / 5;
    return 0;
}

struct bss {
    char bssid[18];
    int freq;
    int signal;
    int rsn;
    char ssid[160];
};

/* One SCAN_RESULTS line: bssid, frequency, signal, flags, ssid (tab-separated). */
static int parse_bss(char *line, struct bss *b) {
    char *fields[5];
    int i;
    for (i = 0; i < 5; i++) {
        fields[i] = line;
        line = strchr(line, i < 4 ? '\t' : '\n');
        if (!line && i < 4)
            return -1;
        if (line)
            *line++ = '\0';
    }
    snprintf(b->bssid, sizeof(b->bssid), "%s", fields[0]);
    b->freq = atoi(fields[1]);
    b->signal = atoi(fields[2]);
    b->rsn = strstr(fields[3], "WPA2") != NULL || strstr(fields[3], "RSN") != NULL;
    snprintf(b->ssid, sizeof(b->ssid), "%s", fields[4]);
    return 0;
}

static int each_bss(char *results, void (*print)(const struct bss *, int, const char *),
                    const char *associated) {
    char *line = strchr(results, '\n'); /* after the header */
    struct bss b;
    int cell = 0;
    while (line && *++line) {
        char *next = strchr(line, '\n');
        if (next)
            *next = '\0';
        if (parse_bss(line, &b) == 0)
            print(&b, ++cell, associated);
        line = next;
    }
    return cell;
}

/* iwlist's quality: cfg80211 maps -110..-40 dBm onto 0..70. */
static void print_iwlist_cell(const struct bss *b, int cell, const char *associated) {
    int level = b->signal < -110 ? -110 : b->signal > -40 ? -40 : b->signal;
    (void)associated;
    printf("          Cell %02d - Address: %s\n", cell, b->bssid);
    printf("                    Channel:%d\n", channel_of(b->freq));
    printf("                    Frequency:%g GHz (Channel %d)\n", b->freq / 1000.0,
           channel_of(b->freq));
    printf("                    Quality=%d/70  Signal level=%d dBm  \n", level + 110, b->signal);
    printf("                    Encryption key:%s\n", b->rsn ? "on" : "off");
    printf("                    ESSID:\"%s\"\n", b->ssid);
    printf("                    Bit Rates:1 Mb/s; 2 Mb/s; 5.5 Mb/s; 11 Mb/s; 6 Mb/s\n"
           "                              9 Mb/s; 12 Mb/s; 18 Mb/s; 24 Mb/s; 36 Mb/s\n"
           "                              48 Mb/s; 54 Mb/s\n");
    printf("                    Mode:Master\n");
    if (b->rsn)
        printf("                    IE: IEEE 802.11i/WPA2 Version 1\n"
               "                        Group Cipher : CCMP\n"
               "                        Pairwise Ciphers (1) : CCMP\n"
               "                        Authentication Suites (1) : PSK\n");
}

static void print_iw_bss(const struct bss *b, int cell, const char *associated) {
    (void)cell;
    printf("BSS %s(on %s)%s\n", b->bssid, the_supplicant.ifname,
           associated && strcmp(associated, b->bssid) == 0 ? " -- associated" : "");
    printf("\tfreq: %d\n", b->freq);
    printf("\tbeacon interval: 100 TUs\n");
    printf("\tcapability: ESS%s ShortSlotTime (0x%04x)\n", b->rsn ? " Privacy" : "",
           b->rsn ? 0x0411 : 0x0401);
    printf("\tsignal: %d.00 dBm\n", b->signal);
    printf("\tlast seen: 0 ms ago\n");
    printf("\tSSID: %s\n", b->ssid);
    printf("\tDS Parameter set: channel %d\n", channel_of(b->freq));
    if (b->rsn)
        printf("\tRSN:\t * Version: 1\n"
               "\t\t * Group cipher: CCMP\n"
               "\t\t * Pairwise ciphers: CCMP\n"
               "\t\t * Authentication suites: PSK\n"
               "\t\t * Capabilities: 16-PTKSA-RC 1-GTKSA-RC (0x000c)\n");
}

static int iwlist_main(int argc, char **argv) {
    static char results[MAX_DATAGRAM + 1];
    struct client c;
    if (argc < 3 || (strcmp(argv[2], "scanning") != 0 && strcmp(argv[2], "scan") != 0)) {
        fprintf(stderr, "Usage: iwlist [interface] scanning\n"
                        "  (only scanning is answered for this node's WiFi station)\n");
        return 1;
    }
    the_supplicant.ifname = argv[1];
    if (client_open(&c, "iwlist", argv[1], 0) < 0) {
        fprintf(stderr, "%-9s Interface doesn't support scanning.\n\n", argv[1]);
        return 1;
    }
    if (scan(&c, results, sizeof(results)) < 0) {
        client_close(&c);
        fprintf(stderr, "%-9s Failed to read scan data : Connection timed out\n\n", argv[1]);
        return 1;
    }
    client_close(&c);
    if (!strchr(results, '\n') || !strchr(results, '\n')[1]) {
        printf("%-9s No scan results\n\n", argv[1]);
        return 0;
    }
    printf("%-9s Scan completed :\n", argv[1]);
    each_bss(results, print_iwlist_cell, NULL);
    printf("\n");
    return 0;
}

static int iw_link(struct client *c, const char *ifname) {
    char status[MAX_DATAGRAM + 1], signal[MAX_DATAGRAM + 1], value[160];
    char bssid[32] = "", ssid[160] = "", freq[16] = "0";
    if (client_request(c, "STATUS", status, sizeof(status)) < 0)
        return 1;
    if (!value_of(status, "wpa_state", value, sizeof(value)) || strcmp(value, "COMPLETED")) {
        printf("Not connected.\n");
        return 0;
    }
    value_of(status, "bssid", bssid, sizeof(bssid));
    value_of(status, "ssid", ssid, sizeof(ssid));
    value_of(status, "freq", freq, sizeof(freq));
    printf("Connected to %s (on %s)\n\tSSID: %s\n\tfreq: %s\n", bssid, ifname, ssid, freq);
    if (client_request(c, "SIGNAL_POLL", signal, sizeof(signal)) == 0 &&
        value_of(signal, "RSSI", value, sizeof(value)))
        printf("\tsignal: %s dBm\n", value);
    printf("\ttx bitrate: 54.0 MBit/s\n\n\tbss flags:\tshort-slot-time\n"
           "\tdtim period:\t2\n\tbeacon int:\t100\n");
    return 0;
}

static int iw_main(int argc, char **argv) {
    static char results[MAX_DATAGRAM + 1];
    char status[MAX_DATAGRAM + 1], bssid[32] = "";
    const char *ifname, *what;
    struct client c;
    int code = 0;
    if (argc >= 4 && strcmp(argv[1], "dev") == 0) {
        ifname = argv[2];
        what = argv[3];
    } else if (argc >= 3) {
        ifname = argv[1];
        what = argv[2];
    } else {
        fprintf(stderr, "Usage:\tiw dev <devname> scan|link\n"
                        "  (only scan and link are answered for this node's WiFi station)\n");
        return 1;
    }
    if (strcmp(what, "scan") != 0 && strcmp(what, "link") != 0) {
        fprintf(stderr, "command failed: Operation not supported (-95)\n");
        return 1;
    }
    the_supplicant.ifname = ifname;
    if (client_open(&c, "iw", ifname, strcmp(what, "link") == 0) < 0) {
        /* No wpa_supplicant: the radio is there, associated with nothing. */
        char device[MAX_ADDRESS + 32];
        snprintf(device, sizeof(device), "/sys/class/net/%s", ifname);
        if (strcmp(what, "link") == 0 && access(device, F_OK) == 0) {
            printf("Not connected.\n");
            return 0;
        }
        fprintf(stderr, "command failed: No such device (-19)\n");
        return 237;
    }
    if (strcmp(what, "link") == 0) {
        code = iw_link(&c, ifname);
    } else if (client_request(&c, "STATUS", status, sizeof(status)) < 0 ||
               (strcmp(argv[argc - 1], "dump") == 0 && argv[argc - 1] != what
                    ? client_request(&c, "SCAN_RESULTS", results, sizeof(results))
                    : scan(&c, results, sizeof(results))) < 0) {
        fprintf(stderr, "command failed: Connection timed out (-110)\n");
        code = 1;
    } else {
        value_of(status, "bssid", bssid, sizeof(bssid));
        each_bss(results, print_iw_bss, bssid);
    }
    client_close(&c);
    return code;
}

int main(int argc, char **argv) {
    const char *name = base_name(argc > 0 ? argv[0] : PROGRAM);
    if (strcmp(name, "wpa_supplicant") == 0)
        return supplicant_main(argc, argv);
    if (strcmp(name, "iwlist") == 0)
        return iwlist_main(argc, argv);
    if (strcmp(name, "iw") == 0)
        return iw_main(argc, argv);
    return relay_main(argc, argv);
}
