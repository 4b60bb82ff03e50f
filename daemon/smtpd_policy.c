/*
 * Listener policies: building them from the config, and matching client
 * addresses against the "allow" networks.
 */
#include <stdlib.h>
#include <string.h>

#include "compat.h"
#include "smtpd_policy.h"
#include "smtpd_tls.h"
#include "util.h"

static void
smtpd_policy_destroy(struct smtpd_policy *policy)
{
	if (policy->tls != NULL)
		SSL_CTX_free(policy->tls);
	smtpd_auth_users_free(policy->users);
	config_listen_clear(&policy->own);
	config_free(policy->config);
	free(policy);
}

/* Load what the settings name: the certificate and key, and the users file. */
static int
smtpd_policy_load(struct smtpd_policy *policy, char **errstr)
{
	const struct config_listen *listen = policy->listen;

	if (listen->starttls) {
		if (listen->tls_cert == NULL || listen->tls_key == NULL)
			return set_error(errstr, "starttls needs tls_cert and tls_key");
		policy->tls = smtpd_tls_ctx_new(listen->tls_cert, listen->tls_key,
		    errstr);
		if (policy->tls == NULL)
			return -1;
	}
	if (listen->auth != SMTPD_AUTH_OFF) {
		if (listen->users_file == NULL)
			return set_error(errstr, "auth %s needs users_file",
			    smtpd_auth_name(listen->auth));
		policy->users = smtpd_auth_users_load(listen->users_file, errstr);
		if (policy->users == NULL)
			return -1;
	}
	return 0;
}

struct smtpd_policy *
smtpd_policy_new(struct config *config, const struct config_listen *entry,
    const char *text, uint64_t listener_id, char **errstr)
{
	struct smtpd_policy *policy;
	char *error = NULL;

	policy = xcalloc(1, sizeof(*policy));
	policy->refs = 1;
	policy->listener_id = listener_id;
	policy->config = config_ref(config);
	if (entry == NULL) {
		policy->own.text = xstrdup(text);
		config_listen_inherit(&policy->own, &config->smtpd);
		entry = &policy->own;
	}
	policy->listen = entry;

	if (smtpd_policy_load(policy, &error) == -1) {
		set_error(errstr, "listen %s: %s", entry->text, error);
		free(error);
		smtpd_policy_destroy(policy);
		return NULL;
	}
	return policy;
}

struct smtpd_policy *
smtpd_policy_ref(struct smtpd_policy *policy)
{
	policy->refs++;
	return policy;
}

void
smtpd_policy_free(struct smtpd_policy *policy)
{
	if (policy == NULL || --policy->refs > 0)
		return;
	smtpd_policy_destroy(policy);
}

/*
 * The address of ADDR as config networks store it: family 4 or 6 and its
 * bytes. An IPv4-mapped IPv6 address (a v4 client of a "[::]" listener)
 * counts as IPv4. Returns false for other families.
 */
static bool
smtpd_policy_address(const struct sockaddr *addr, int *family,
    unsigned char bytes[16])
{
	const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;

	if (addr->sa_family == AF_INET) {
		*family = 4;
		memcpy(bytes, &sin->sin_addr, 4);
		return true;
	}
	if (addr->sa_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
		*family = 4;
		memcpy(bytes, sin6->sin6_addr.s6_addr + 12, 4);
		return true;
	}
	*family = 6;
	memcpy(bytes, sin6->sin6_addr.s6_addr, 16);
	return true;
}

static bool
smtpd_policy_network_contains(const struct config_network *net, int family,
    const unsigned char *bytes)
{
	int full = net->prefix / 8, rest = net->prefix % 8;
	unsigned char mask;

	if (net->family != family)
		return false;
	if (memcmp(net->addr, bytes, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (unsigned char)(0xFF << (8 - rest));
	return (bytes[full] & mask) == net->addr[full];
}

bool
smtpd_policy_allows(const struct smtpd_policy *policy, const struct sockaddr *addr)
{
	const struct config_networks *allow = &policy->listen->allow;
	unsigned char bytes[16];
	int family;
	size_t i;

	/* A Unix socket from the service manager reaches only local clients. */
	if (addr->sa_family == AF_UNIX)
		return true;
	if (!smtpd_policy_address(addr, &family, bytes))
		return false;
	for (i = 0; i < allow->count; i++)
		if (smtpd_policy_network_contains(&allow->items[i], family, bytes))
			return true;
	return false;
}

bool
smtpd_policy_is_loopback(const struct sockaddr *addr)
{
	static const unsigned char loopback6[16] = { [15] = 1 };
	unsigned char bytes[16];
	int family;

	if (addr->sa_family == AF_UNIX)
		return true;
	if (!smtpd_policy_address(addr, &family, bytes))
		return false;
	if (family == 4)
		return bytes[0] == 127;
	return memcmp(bytes, loopback6, 16) == 0;
}
