/* Server side of the control channel (common/control.h has the protocol). */
#ifndef RELAYQ_CONTROL_SERVER_H
#define RELAYQ_CONTROL_SERVER_H

/* Listen on config->control_socket. Returns 0, or -1 with *ERRSTR. */
int control_server_start(char **errstr);
void control_server_stop(void);

#endif
