/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * memcoord's settings in a libvirt domain XML: one element in memcoord's own namespace under
 * <metadata>, written and read with virDomainSetMetadata()/virDomainGetMetadata():
 *
 *   <metadata>
 *     <memcoord:limits xmlns:memcoord="https://memcoord.org/xmlns/limits/1"
 *                      min="512M" max="2G" weight="200" exclude="no"/>
 *   </metadata>
 *
 * Every attribute is optional: min and max are sizes (bytes, or with a K/M/G/T suffix, binary),
 * weight 1 to 10000, exclude yes/no. And <memtune><min_guarantee> as a floor. The parsers are
 * pure, for the tests.
 */

#include "guest.h"

#define MC_LIBVIRT_META_NS "https://memcoord.org/xmlns/limits/1"
#define MC_LIBVIRT_META_PREFIX "memcoord"

/* Parses the element virDomainGetMetadata() returns into the min/max/weight/excluded of
 * *meta (min_guarantee untouched). Returns 0, or -EINVAL with *why (g_free) saying what is
 * wrong; then *meta is unchanged. */
int mc_libvirt_parse_meta(const char *xml, McGuestMeta *meta, char **why);

/* <memtune><min_guarantee> of a whole domain XML, in KiB; 0 = none. */
uint64_t mc_libvirt_parse_min_guarantee(const char *domain_xml);

/* The element for virDomainSetMetadata(), or NULL when meta sets nothing (remove it). */
char *mc_libvirt_format_meta(const McGuestMeta *meta);
