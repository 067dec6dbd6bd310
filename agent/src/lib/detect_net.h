/* Addresses for detectors: IPv4/IPv6 text as the collectors report it,
 * CIDR sets (threat-intel lists, allowlists) and port sets. */
#ifndef AGENT_LIB_DETECT_NET_H
#define AGENT_LIB_DETECT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "lib/samples.h"

struct dnet_addr {
	int family;            /* 4 or 6; IPv4-mapped IPv6 is stored as 4 */
	uint8_t a[16];         /* network order; IPv4 in a[0..3] */
};

/* "10.0.2.2", "fe80::1", "::ffff:1.2.3.4". Returns false if not an address. */
bool dnet_parse(const char *text, struct dnet_addr *out);
bool dnet_is_loopback(const struct dnet_addr *a);
/* Unspecified (0.0.0.0, ::) */
bool dnet_is_any(const struct dnet_addr *a);
/* Loopback or unspecified; also true for text that is not an address. */
bool dnet_text_is_local(const char *text);

struct dnet_cidr {
	struct dnet_addr net;
	int bits;
};

/* A set of networks with a lookup cost of one binary search per distinct
 * prefix length, for lists of tens of thousands of entries. */
struct dnet_set {
	struct dnet_cidr *items;
	size_t len, cap;
	bool sorted;
};

/* "1.2.3.4", "1.2.3.0/24", "2001:db8::/32". Returns false if malformed. */
bool dnet_cidr_parse(const char *text, struct dnet_cidr *out);
/* Adds one item; returns false (and adds nothing) if it is malformed. */
bool dnet_set_add(struct dnet_set *s, const char *text);
/* Adds every string of a JSON array or comma/space-separated string;
 * returns the first bad item's index, or -1 when all are good. */
int dnet_set_add_json(struct dnet_set *s, const cJSON *v);
/* The matching network, or NULL. */
const struct dnet_cidr *dnet_set_match(struct dnet_set *s, const struct dnet_addr *a);
const struct dnet_cidr *dnet_set_match_text(struct dnet_set *s, const char *text);
/* A config `check` for lists of addresses and networks. */
const char *dnet_check_list(const cJSON *v);
void dnet_cidr_format(const struct dnet_cidr *c, char *out, size_t size);
void dnet_set_clear(struct dnet_set *s);

/* A set of ports 0..65535 as a bitmap. */
struct dnet_ports {
	uint8_t bits[8192];
};
/* "22,80,8000-8100" or a JSON array of numbers/strings; NULL or "" empties.
 * Returns NULL, or a static string saying what was expected. */
const char *dnet_ports_parse(struct dnet_ports *p, const cJSON *v);
static inline bool dnet_ports_has(const struct dnet_ports *p, long port)
{
	return port >= 0 && port <= 65535 && (p->bits[port >> 3] >> (port & 7)) & 1;
}

/* A config `check` for port lists. */
const char *dnet_check_ports(const cJSON *v);

#endif
