/*
 * An app that serves and then dies: it starts /server, the example
 * recipe's server, as a child, and DIES_AFTER seconds (default 6) after
 * its start it exits 3, its container with it (it is the container's
 * PID 1, so the engine kills the server). The engine restarts the task
 * (restart policy on-failure) and the next one dies the same way: a
 * version that passes the update monitor and the first look of its
 * tests, then crashes while they run. Built static, next to /server, by
 * the engine-backed tests (tests/swarm/watch.rs) into an image of their
 * own.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	const char *s = getenv("DIES_AFTER");
	unsigned int after = 6;
	pid_t pid;

	(void)argc;
	if (s != NULL && *s != '\0')
		after = (unsigned int)strtoul(s, NULL, 10);
	pid = fork();
	if (pid < 0) {
		perror("ccci-dies: fork");
		return 2;
	}
	if (pid == 0) {
		execv("/server", argv);
		perror("ccci-dies: exec /server");
		_exit(127);
	}
	while (after > 0)
		after = sleep(after);
	fprintf(stderr, "ccci-dies: exiting 3 as planned\n");
	return 3;
}
