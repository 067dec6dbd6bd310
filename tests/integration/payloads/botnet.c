/* A stand-in for a Mirai-style bot, for the Botnet scenario: it opens a raw
 * socket and fans out telnet (port 23) connection attempts to a range of
 * addresses. Run it from /tmp under a random name and delete the file, as
 * droppers do. The addresses are 198.18.0.0/15 (RFC 2544 benchmarking,
 * never routed); in the test guest (`restrict=on`) nothing leaves anyway.
 * Usage: NAME [seconds] */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define INFLIGHT 32

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 300;
	int raw = socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
	int fds[INFLIGHT];
	for (int i = 0; i < INFLIGHT; i++)
		fds[i] = -1;
	time_t end = time(NULL) + seconds;
	for (unsigned n = 0; time(NULL) < end; n++) {
		int slot = (int)(n % INFLIGHT);
		if (fds[slot] >= 0)
			close(fds[slot]);
		fds[slot] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(23) };
		sa.sin_addr.s_addr = htonl(0xC6120000u | ((n * 2654435761u) & 0x1ffff)); /* 198.18.0.0/15 */
		connect(fds[slot], (struct sockaddr *)&sa, sizeof(sa));
		usleep(20000);
	}
	close(raw);
	return 0;
}
