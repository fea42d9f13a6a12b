/*
 * walvfs.h -- a SQLite VFS shim that hands each WAL transaction to the
 * file system in one write.
 *
 * SQLite writes a WAL frame as two writes (a 24-byte header, then the
 * page), so a commit touching six pages costs twelve pwrite() calls
 * before its fsync.  Over this shim the frames of a transaction are
 * gathered in memory and written with one call when the commit frame is
 * complete -- before SQLite syncs the WAL or publishes the frames in the
 * wal-index, so what is on disk and what other connections see at each
 * step SQLite takes is what it would be without the shim.
 */
#ifndef KIOSKD_WALVFS_H
#define KIOSKD_WALVFS_H

/* The name of a VFS that is base (NULL or "": SQLite's default) with
 * WAL writes gathered, registered on first use; NULL when base is not a
 * registered VFS or memory ran out. */
const char *walvfs_over(const char *base);

#endif
