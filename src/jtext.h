/* Fast paths for the JSON text of the protocol's common case.
 *
 * jansson stays the reference: each function here either gives exactly
 * what jansson gives for the same input, or declines and the caller asks
 * jansson (which also words every error).  What is declined: reals,
 * \u escapes, invalid text of any kind, duplicate keys, nesting deeper
 * than JTEXT_MAX_DEPTH. */
#ifndef KIOSKD_JTEXT_H
#define KIOSKD_JTEXT_H

#include <jansson.h>
#include <stddef.h>

#define JTEXT_MAX_DEPTH 32

/* The object in s[0..len): what json_loadb(s, len, JSON_REJECT_DUPLICATES)
 * returns, or NULL: declined (not an object, or see above). */
json_t *jtext_parse(const char *s, size_t len);

/* What json_dumpb(v, buf, size, JSON_COMPACT) does: the length of v's
 * compact text, which is in buf when it fits in size (else buf holds
 * some of it; nothing is written past size).  0: declined (v is not an
 * object or array, or see above). */
size_t jtext_dump(const json_t *v, char *buf, size_t size);

/* The success reply {"id":id,"ok":true,"result":result} (id NULL: null,
 * result NULL: {}), as jtext_dump would write the object
 * json_pack("{s:O,s:b,s:O}") builds, without building it. */
size_t jtext_reply_ok(const json_t *id, const json_t *result, char *buf, size_t size);

/* json_dumps(v, JSON_COMPACT), through jtext_dump when it can. */
char *jtext_dumps(const json_t *v);

#endif
