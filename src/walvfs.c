/*
 * walvfs.c -- gather a WAL transaction's writes into one.
 *
 * SQLite appends a transaction to the WAL frame by frame, each frame as a
 * 24-byte header write and a page write, and then syncs.  Every write is
 * a system call that walks the file system's write path for one page or
 * less: for a one-row commit of kioskd's schema, a dozen pwrite() calls
 * cost more CPU than the row's b-tree work.  This shim keeps appends to a
 * WAL file in a buffer and writes the buffer out with one call:
 *
 *   - when the page of a commit frame has been written (a frame header
 *     whose "database size" field is not zero marks a commit), so the
 *     transaction is in the file before SQLite syncs it or publishes its
 *     frames in the wal-index -- readers, a sync, and a crash of the
 *     process see what they would see without the shim;
 *   - before anything else reaches the file (a read, a sync, a
 *     truncation, a size query, a file control, a write that is not an
 *     append to the buffer, the close), so the file changes in SQLite's
 *     order;
 *   - when the buffer is full.
 *
 * A failed write of the buffer fails the call that caused it: SQLite
 * rolls the transaction back, as it would after any failed write of it.
 * Only WAL files are wrapped; the database file is the base VFS's own.
 */
#include "walvfs.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_HDR 24
#define BUF_SIZE  (64 * 1024) /* a one-row commit writes about 25 KiB */
#define MAX_SHIMS 4

struct wal_file {
	sqlite3_file base;
	sqlite3_file *real; /* the base VFS's file, placed after this struct */
	unsigned char *buf; /* bytes [off, off + len) of the file, not written yet */
	size_t len;
	sqlite3_int64 off;
	int in_commit; /* the last frame header written was a commit frame's */
};

struct shim {
	sqlite3_vfs vfs; /* first: SQLite hands this pointer back */
	sqlite3_vfs *base;
	char name[64];
};

static struct shim shims[MAX_SHIMS];

static int wal_flush(struct wal_file *w)
{
	if (!w->len)
		return SQLITE_OK;
	size_t n = w->len;
	w->len = 0; /* written or failed: SQLite rolls back after a failure */
	return w->real->pMethods->xWrite(w->real, w->buf, (int)n, w->off);
}

static int wal_close(sqlite3_file *f)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);
	int rc2 = w->real->pMethods->xClose(w->real);

	free(w->buf);
	w->buf = NULL;
	return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);

	return rc != SQLITE_OK ? rc : w->real->pMethods->xRead(w->real, p, n, off);
}

static int wal_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
	struct wal_file *w = (struct wal_file *)f;
	const unsigned char *b = p;
	int rc;

	if (n == FRAME_HDR)
		w->in_commit = (b[4] | b[5] | b[6] | b[7]) != 0;
	else if (off == 0)
		w->in_commit = 0; /* the header of a restarted log, synced next */
	if (w->len && (off != w->off + (sqlite3_int64)w->len || w->len + (size_t)n > BUF_SIZE) &&
	    (rc = wal_flush(w)) != SQLITE_OK)
		return rc;
	if (!w->buf)
		w->buf = malloc(BUF_SIZE); /* without it, writes go straight through */
	if (!w->buf || (size_t)n > BUF_SIZE)
		return w->real->pMethods->xWrite(w->real, p, n, off);
	if (!w->len)
		w->off = off;
	memcpy(w->buf + w->len, p, (size_t)n);
	w->len += (size_t)n;
	/* the commit frame's page (or the rest of it) is the transaction's
	 * last write before SQLite syncs or publishes it */
	return w->in_commit && n != FRAME_HDR ? wal_flush(w) : SQLITE_OK;
}

static int wal_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);

	return rc != SQLITE_OK ? rc : w->real->pMethods->xTruncate(w->real, size);
}

static int wal_sync(sqlite3_file *f, int flags)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);

	return rc != SQLITE_OK ? rc : w->real->pMethods->xSync(w->real, flags);
}

static int wal_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);

	return rc != SQLITE_OK ? rc : w->real->pMethods->xFileSize(w->real, size);
}

static int wal_lock(sqlite3_file *f, int level)
{
	sqlite3_file *r = ((struct wal_file *)f)->real;
	return r->pMethods->xLock(r, level);
}

static int wal_unlock(sqlite3_file *f, int level)
{
	sqlite3_file *r = ((struct wal_file *)f)->real;
	return r->pMethods->xUnlock(r, level);
}

static int wal_reserved(sqlite3_file *f, int *out)
{
	sqlite3_file *r = ((struct wal_file *)f)->real;
	return r->pMethods->xCheckReservedLock(r, out);
}

static int wal_control(sqlite3_file *f, int op, void *arg)
{
	struct wal_file *w = (struct wal_file *)f;
	int rc = wal_flush(w);

	return rc != SQLITE_OK ? rc : w->real->pMethods->xFileControl(w->real, op, arg);
}

static int wal_sector(sqlite3_file *f)
{
	sqlite3_file *r = ((struct wal_file *)f)->real;
	return r->pMethods->xSectorSize(r);
}

static int wal_device(sqlite3_file *f)
{
	sqlite3_file *r = ((struct wal_file *)f)->real;
	return r->pMethods->xDeviceCharacteristics(r);
}

static const sqlite3_io_methods wal_io = {
        .iVersion = 1, /* a WAL file is never mapped nor shared-memory */
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_size,
        .xLock = wal_lock,
        .xUnlock = wal_unlock,
        .xCheckReservedLock = wal_reserved,
        .xFileControl = wal_control,
        .xSectorSize = wal_sector,
        .xDeviceCharacteristics = wal_device,
};

/* A WAL file is wrapped; any other file is opened by the base VFS in
 * place (szOsFile is larger than the base's), with its own methods. */
static int shim_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out)
{
	sqlite3_vfs *base = ((struct shim *)vfs)->base;
	struct wal_file *w = (struct wal_file *)f;
	int rc;

	if (!(flags & SQLITE_OPEN_WAL))
		return base->xOpen(base, name, f, flags, out);
	memset(w, 0, sizeof(*w));
	w->real = (sqlite3_file *)(w + 1);
	if ((rc = base->xOpen(base, name, w->real, flags, out)) != SQLITE_OK)
		return rc; /* f->pMethods stays NULL: SQLite closes nothing */
	w->base.pMethods = &wal_io;
	return SQLITE_OK;
}

const char *walvfs_over(const char *base_name)
{
	sqlite3_vfs *base = sqlite3_vfs_find(base_name && *base_name ? base_name : NULL);
	struct shim *s = NULL;

	if (!base)
		return NULL;
	for (size_t i = 0; i < MAX_SHIMS; i++) {
		if (shims[i].base == base)
			return shims[i].name;
		if (!shims[i].base && !s)
			s = &shims[i];
	}
	if (!s)
		return NULL;
	/* the base's other methods take no state from the sqlite3_vfs they
	 * are given (SQLite's unix VFS; the test shims copy it the same way) */
	s->vfs = *base;
	snprintf(s->name, sizeof(s->name), "kioskd-wal+%s", base->zName);
	s->vfs.zName = s->name;
	s->vfs.szOsFile = (int)sizeof(struct wal_file) + base->szOsFile;
	s->vfs.xOpen = shim_open;
	s->vfs.pNext = NULL;
	s->base = base;
	if (sqlite3_vfs_register(&s->vfs, 0) != SQLITE_OK) {
		s->base = NULL;
		return NULL;
	}
	return s->name;
}
