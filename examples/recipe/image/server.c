/*
 * The example recipe's app: a tiny HTTP/1.0 server, built static
 * (gcc -static -O2 -DVERSION='"1.1.0"') into a FROM-scratch image, so a
 * machine that can pull no image can still deploy a real stack.
 *
 *   GET  /      200 "ccci-example VERSION\n" (the version compiled in;
 *               also in the X-Ccci-Example-Version header)
 *   GET  /data  200 with the contents of DATA_DIR/marker, 404 when absent
 *   PUT  /data  (or POST) stores the request body (at most 1 MiB) in
 *               DATA_DIR/marker: temporary file, fsync, rename
 *   GET  /page  200 text/html: the version (<h1 id="version">) and the
 *               stored data (<p id="data">, "no data" when absent), for
 *               the recipe's browser test (tests/page_test.py)
 *   HEAD        as GET, without the body
 *
 * Environment: PORT (default 8080), DATA_DIR (default /data), two knobs
 * for cc-ci-run's convergence tests, set in a recipe's compose:
 * START_DELAY_MS (sleep this long before listening: a slow start, whose
 * task is running before it answers) and EXIT_AFTER_MS (exit 1 this long
 * after listening: a task that starts, then crashes), and PAGE_TITLE (the
 * /page's <title>, default "ccci-example", HTML-escaped: a pull request
 * that changes what the page shows, for the browser test's red case).
 * `server --version` prints the version and exits.
 *
 * One request per connection (Connection: close), one at a time, with
 * five-second socket timeouts so that a stuck client cannot wedge it. It
 * is PID 1 in its container, where signals without a handler are ignored:
 * SIGTERM and SIGINT are handled and end it at once, so `docker stack rm`
 * does not wait out the stop grace period.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#ifndef VERSION
#define VERSION "dev"
#endif

#define HEAD_MAX 8192
#define BODY_MAX (1024 * 1024)

static const char *data_dir = "/data";
static const char *page_title = "ccci-example";

/* A whole number of milliseconds from the environment, 0 when unset. */
static long env_ms(const char *name)
{
	const char *v = getenv(name);
	if (!v || !*v)
		return 0;
	char *end;
	long ms = strtol(v, &end, 10);
	if (*end != '\0' || ms < 0) {
		fprintf(stderr, "ccci-example: %s must be whole milliseconds\n",
			name);
		exit(2);
	}
	return ms;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000,
			      .tv_nsec = (ms % 1000) * 1000000L};
	/* SIGTERM ends the process in its handler; any other interruption
	 * sleeps the rest */
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "ccci-example: EXIT_AFTER_MS reached, exiting 1\n";
	(void)!write(2, msg, sizeof msg - 1);
	_exit(1);
}

static void on_signal(int sig)
{
	(void)sig;
	_exit(0);
}

static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static void respond_as(int fd, int head_only, int code, const char *reason,
		       const char *type, const char *body, size_t len)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof hdr,
			 "HTTP/1.0 %d %s\r\n"
			 "Content-Type: %s; charset=utf-8\r\n"
			 "Content-Length: %zu\r\n"
			 "X-Ccci-Example-Version: %s\r\n"
			 "Connection: close\r\n\r\n",
			 code, reason, type, len, VERSION);
	if (write_all(fd, hdr, (size_t)n) == 0 && !head_only && len > 0)
		write_all(fd, body, len);
}

static void respond(int fd, int head_only, int code, const char *reason,
		    const char *body, size_t len)
{
	respond_as(fd, head_only, code, reason, "text/plain", body, len);
}

static void respond_text(int fd, int head_only, int code, const char *reason,
			 const char *text)
{
	respond(fd, head_only, code, reason, text, strlen(text));
}

static char *marker_path(const char *suffix)
{
	static char path[4096];
	snprintf(path, sizeof path, "%s/marker%s", data_dir, suffix);
	return path;
}

static void get_data(int fd, int head_only)
{
	int in = open(marker_path(""), O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		if (errno == ENOENT)
			respond_text(fd, head_only, 404, "Not Found", "no data\n");
		else
			respond_text(fd, head_only, 500, "Internal Server Error",
				     "cannot open the marker\n");
		return;
	}
	static char buf[BODY_MAX];
	size_t len = 0;
	for (;;) {
		ssize_t n = read(in, buf + len, sizeof buf - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		if (len == sizeof buf)
			break;
	}
	close(in);
	respond(fd, head_only, 200, "OK", buf, len);
}

#define TITLE_MAX 256

/* Appends s[0..len) to page at `at`, HTML-escaped; returns the new end
 * (the caller sizes page for six bytes per byte of s). */
static size_t put_escaped(char *page, size_t at, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		const char *esc = s[i] == '<'   ? "&lt;"
				  : s[i] == '>' ? "&gt;"
				  : s[i] == '&' ? "&amp;"
						: NULL;
		if (esc) {
			size_t n = strlen(esc);
			memcpy(page + at, esc, n);
			at += n;
		} else {
			page[at++] = s[i];
		}
	}
	return at;
}

/* The page the browser test opens: the version and the stored data,
 * HTML-escaped (at most 4 KiB of the data is shown). */
static void get_page(int fd, int head_only)
{
	char data[4096];
	size_t len = 0;
	int in = open(marker_path(""), O_RDONLY | O_CLOEXEC);
	if (in >= 0) {
		ssize_t n;
		while (len < sizeof data &&
		       ((n = read(in, data + len, sizeof data - len)) > 0 ||
			(n < 0 && errno == EINTR)))
			if (n > 0)
				len += (size_t)n;
		close(in);
	}
	static char page[6 * sizeof data + 6 * TITLE_MAX + 1024];
	size_t at = (size_t)snprintf(
		page, sizeof page,
		"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
		"<title>");
	at = put_escaped(page, at, page_title, strnlen(page_title, TITLE_MAX));
	at += (size_t)snprintf(
		page + at, sizeof page - at,
		"</title></head>\n<body>"
		"<h1 id=\"version\">ccci-example %s</h1>\n<p id=\"data\">",
		VERSION);
	if (in < 0)
		at += (size_t)snprintf(page + at, sizeof page - at, "no data");
	at = put_escaped(page, at, data, len);
	at += (size_t)snprintf(page + at, sizeof page - at, "</p>\n</body></html>\n");
	respond_as(fd, head_only, 200, "OK", "text/html", page, at);
}

static void put_data(int fd, const char *body, size_t len)
{
	char *tmp = strdup(marker_path(".tmp"));
	int out = tmp ? open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)
		      : -1;
	int ok = out >= 0 && write_all(out, body, len) == 0 && fsync(out) == 0;
	if (out >= 0)
		ok = close(out) == 0 && ok;
	ok = ok && rename(tmp, marker_path("")) == 0;
	if (ok) {
		int dir = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dir >= 0) {
			fsync(dir);
			close(dir);
		}
		char msg[64];
		snprintf(msg, sizeof msg, "stored %zu bytes\n", len);
		respond_text(fd, 0, 200, "OK", msg);
	} else {
		if (tmp)
			unlink(tmp);
		respond_text(fd, 0, 500, "Internal Server Error",
			     "cannot store the marker\n");
	}
	free(tmp);
}

static void handle(int fd)
{
	static char buf[HEAD_MAX + BODY_MAX];
	size_t have = 0;
	char *end = NULL;
	while (!end) {
		if (have == HEAD_MAX) {
			respond_text(fd, 0, 431, "Request Header Fields Too Large",
				     "header too large\n");
			return;
		}
		ssize_t n = read(fd, buf + have, HEAD_MAX - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* closed or timed out before a full header */
		have += (size_t)n;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	size_t head_len = (size_t)(end - buf) + 4;

	char method[16], path[1024];
	if (sscanf(buf, "%15s %1023s", method, path) != 2) {
		respond_text(fd, 0, 400, "Bad Request", "bad request line\n");
		return;
	}
	char *q = strchr(path, '?');
	if (q)
		*q = '\0';

	size_t clen = 0;
	for (char *line = strstr(buf, "\r\n"); line && line < end;
	     line = strstr(line + 2, "\r\n")) {
		if (strncasecmp(line + 2, "Content-Length:", 15) == 0) {
			clen = strtoul(line + 2 + 15, NULL, 10);
			break;
		}
	}
	if (clen > BODY_MAX) {
		respond_text(fd, 0, 413, "Payload Too Large", "body too large\n");
		return;
	}
	while (have < head_len + clen) {
		ssize_t n = read(fd, buf + have, head_len + clen - have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			respond_text(fd, 0, 400, "Bad Request", "short body\n");
			return;
		}
		have += (size_t)n;
	}

	int is_get = strcmp(method, "GET") == 0;
	int is_head = strcmp(method, "HEAD") == 0;
	int is_put = strcmp(method, "PUT") == 0 || strcmp(method, "POST") == 0;
	if (strcmp(path, "/") == 0) {
		if (is_get || is_head)
			respond_text(fd, is_head, 200, "OK",
				     "ccci-example " VERSION "\n");
		else
			respond_text(fd, 0, 405, "Method Not Allowed",
				     "GET or HEAD\n");
	} else if (strcmp(path, "/page") == 0) {
		if (is_get || is_head)
			get_page(fd, is_head);
		else
			respond_text(fd, 0, 405, "Method Not Allowed",
				     "GET or HEAD\n");
	} else if (strcmp(path, "/data") == 0) {
		if (is_get || is_head)
			get_data(fd, is_head);
		else if (is_put)
			put_data(fd, buf + head_len, clen);
		else
			respond_text(fd, 0, 405, "Method Not Allowed",
				     "GET, HEAD, PUT or POST\n");
	} else {
		respond_text(fd, is_head, 404, "Not Found", "not found\n");
	}
	fprintf(stderr, "%s %s\n", method, path);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		puts(VERSION);
		return 0;
	}
	if (argc > 1) {
		fprintf(stderr, "usage: %s [--version]\n", argv[0]);
		return 2;
	}
	const char *p = getenv("PORT");
	int port = p && *p ? atoi(p) : 8080;
	const char *d = getenv("DATA_DIR");
	if (d && *d)
		data_dir = d;
	const char *t = getenv("PAGE_TITLE");
	if (t && *t)
		page_title = t;

	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	long delay = env_ms("START_DELAY_MS"), exit_after = env_ms("EXIT_AFTER_MS");
	if (delay > 0) {
		fprintf(stderr, "ccci-example %s: START_DELAY_MS=%ld, not listening yet\n",
			VERSION, delay);
		sleep_ms(delay);
	}

	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in addr;
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short)port);
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0 ||
	    listen(s, 64) < 0) {
		perror("ccci-example: listen");
		return 1;
	}
	fprintf(stderr, "ccci-example %s listening on :%d, data in %s\n",
		VERSION, port, data_dir);
	if (exit_after > 0) {
		/* the accept loop blocks: a timer ends it from outside */
		struct sigaction al;
		memset(&al, 0, sizeof al);
		al.sa_handler = on_alarm;
		sigaction(SIGALRM, &al, NULL);
		struct itimerval it = {.it_value = {.tv_sec = exit_after / 1000,
						    .tv_usec = (exit_after % 1000) * 1000}};
		setitimer(ITIMER_REAL, &it, NULL);
	}

	struct timeval tv = {.tv_sec = 5, .tv_usec = 0};
	for (;;) {
		int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
		handle(c);
		close(c);
	}
}
