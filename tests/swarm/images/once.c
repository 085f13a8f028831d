/*
 * An app that crashes once and then runs, as one that starts before its
 * database does (swarm ignores depends_on): on its first start (no marker
 * in DATA_DIR, default /data, a volume that outlives the task) it writes
 * the marker and exits 1; on every later start it executes /server, the
 * example recipe's server. Built static, next to /server, by the
 * engine-backed tests (tests/swarm/converge.rs) into an image of their own.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *d = getenv("DATA_DIR");
	char path[4096];

	(void)argc;
	if (d == NULL || *d == '\0')
		d = "/data";
	if (snprintf(path, sizeof path, "%s/.ccci-once", d) >= (int)sizeof path)
		return 2;
	if (access(path, F_OK) != 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);

		if (fd < 0 || fsync(fd) != 0 || close(fd) != 0) {
			perror("ccci-once: marker");
			return 2;
		}
		fprintf(stderr, "ccci-once: first start, exiting 1\n");
		return 1;
	}
	execv("/server", argv);
	perror("ccci-once: exec /server");
	return 127;
}
