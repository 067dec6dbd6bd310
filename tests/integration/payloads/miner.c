/* A stand-in for a cryptocurrency miner, for the CryptoMiner scenario: run
 * it as "xmrig -o stratum+tcp://HOST:PORT -u WALLET -p x". It speaks
 * Stratum (JSON-RPC over TCP: subscribe, authorize, submit) to the pool and
 * burns CPU between submissions, as a real miner does. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int pool_connect(const char *url)
{
	char host[64];
	int port;
	if (sscanf(url, "stratum+tcp://%63[^:]:%d", host, &port) != 2)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		return -1;
	return fd;
}

static void rpc(int fd, int id, const char *method, const char *params)
{
	char line[512], reply[1024];
	int n = snprintf(line, sizeof(line), "{\"id\":%d,\"jsonrpc\":\"2.0\",\"method\":\"%s\",\"params\":%s}\n", id,
			 method, params);
	if (write(fd, line, (size_t)n) != n)
		exit(1);
	if (read(fd, reply, sizeof(reply) - 1) <= 0)
		exit(1);
}

int main(int argc, char **argv)
{
	const char *url = NULL, *user = "x";
	for (int i = 1; i + 1 < argc; i++) {
		if (!strcmp(argv[i], "-o"))
			url = argv[i + 1];
		else if (!strcmp(argv[i], "-u"))
			user = argv[i + 1];
	}
	int fd = url ? pool_connect(url) : -1;
	if (fd < 0) {
		fprintf(stderr, "usage: %s -o stratum+tcp://IP:PORT -u WALLET (pool unreachable?)\n", argv[0]);
		return 2;
	}
	char params[256];
	rpc(fd, 1, "mining.subscribe", "[\"xmrig/6.21.0\"]");
	snprintf(params, sizeof(params), "[\"%.100s\",\"x\"]", user);
	rpc(fd, 2, "mining.authorize", params);
	volatile unsigned long h = 5381;
	for (int id = 3;; id++) {
		time_t until = time(NULL) + 2;
		while (time(NULL) < until)
			for (int k = 0; k < 100000; k++)
				h = h * 33 + (unsigned long)k;
		snprintf(params, sizeof(params), "[\"%.100s\",\"job\",\"%08lx\"]", user, h & 0xffffffff);
		rpc(fd, id, "mining.submit", params);
	}
}
