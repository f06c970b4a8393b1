/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <systemd/sd-bus.h>

/*
 * The one authorization gate for org.memcoord's methods. Members listed as read-only are open
 * to everyone; members listed as managing are allowed to root, or to a caller polkit
 * authorizes for org.memcoord.manage; anything not listed, and anything polkit does not answer
 * yes to in time, is denied.
 *
 * The polkit question is asked asynchronously: the loop goes on ticking while it is pending.
 */

/* A method handler's second half, run once the caller is allowed. Same contract as an sd-bus
 * method handler: it sends its reply, or returns a negative errno (with error set or not). */
typedef int (*McAuthContinuation)(sd_bus_message *m, void *userdata, sd_bus_error *error);

/* How long polkit may take before the answer is no. An interactive check may wait for the
 * admin to type a password in an authentication agent; it still ends before the caller's own
 * default method-call timeout (25 s), so the caller sees AccessDenied rather than NoReply. */
#define MC_AUTH_POLKIT_TIMEOUT_USEC (5 * UINT64_C(1000000))
#define MC_AUTH_POLKIT_INTERACTIVE_TIMEOUT_USEC (20 * UINT64_C(1000000))
/* Checks in flight at once; more are denied at once rather than queued without bound. */
#define MC_AUTH_MAX_PENDING 64

/*
 * Runs cont(m, userdata, error) when the caller of m may call it. Returns what cont returns
 * when the answer is known at once (a read-only member, root); 1 when polkit was asked (the
 * reply, cont's or AccessDenied, is sent when polkit answers or the time is up); or a negative
 * errno with error set to AccessDenied.
 */
int mc_auth_gate(sd_bus_message *m, McAuthContinuation cont, void *userdata, sd_bus_error *error);

/* Forgets every pending check without replying or running its continuation (at exit, before
 * what the continuations use is freed). */
void mc_auth_cancel_all(void);
