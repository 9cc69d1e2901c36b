/* Files: the read-only file tree (--rootfs) and the device files, path
 * resolution that cannot leave the tree, the descriptor table, and the calls
 * on paths and descriptors (open, stat, read, write, lseek, access, readlink,
 * fcntl, dup ...). Reads of standard input and writes to standard output and
 * error are handed to stdio.c. */
#include "kernel.h"

struct fd fds[PSN_MAX_FDS];

/* Standard input, output and error are the terminal, each open for reading
 * and writing (F_GETFL says O_RDWR). */
void files_init(void) {
    fds[0].kind = FD_TTY_IN;
    fds[0].flags = O_RDWR;
    fds[1].kind = FD_TTY_OUT;
    fds[1].flags = O_RDWR;
    fds[2].kind = FD_TTY_ERR;
    fds[2].flags = O_RDWR;
}

/* ---- file tree ---- */
static const struct psn_fs_header* fs(void) {
    return boot->rootfs_size ? (const struct psn_fs_header*)boot->rootfs_addr : 0;
}
static const struct psn_fs_entry* fs_entry(u64 i) {
    return (const struct psn_fs_entry*)(boot->rootfs_addr + fs()->entries_off) + i;
}
static const char* fs_path(u64 i) {
    return (const char*)(boot->rootfs_addr + fs_entry(i)->path_off);
}

#define GUEST_PATH_MAX 1024 /* longest path, NUL included (Linux's PATH_MAX is 4096) */
/* Resolves `path` against directory `base` into an absolute normalised path.
 * ".." at the root stays at the root, so no path leaves the tree. */
static int normalise(const char* base, const char* path, char* out) {
    u64 n = 0;
    out[n++] = '/';
    const char* parts[2] = {path[0] == '/' ? "" : base, path};
    for (int k = 0; k < 2; k++) {
        const char* p = parts[k];
        while (*p) {
            while (*p == '/')
                p++;
            const char* s = p;
            while (*p && *p != '/')
                p++;
            u64 len = (u64)(p - s);
            if (len == 0 || (len == 1 && s[0] == '.'))
                continue;
            if (len == 2 && s[0] == '.' && s[1] == '.') {
                while (n > 1 && out[n - 1] != '/')
                    n--;
                if (n > 1)
                    n--;
                continue;
            }
            if (n + len + 2 >= GUEST_PATH_MAX)
                return -ENAMETOOLONG;
            if (n > 1)
                out[n++] = '/';
            memcpy(out + n, s, len);
            n += len;
        }
    }
    out[n] = 0;
    return 0;
}
/* The entry index of an absolute normalised path, -1 for the root of an
 * empty tree, or -ENOENT. */
static i64 fs_lookup(const char* abs) {
    const struct psn_fs_header* h = fs();
    if (!h)
        return abs[0] == '/' && abs[1] == 0 ? -1 /* root of an empty tree */ : -ENOENT;
    u64 lo = 0, hi = h->count;
    while (lo < hi) {
        u64 mid = (lo + hi) / 2;
        int c = kstrcmp(fs_path(mid), abs);
        if (c == 0)
            return (i64)mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

enum special { SP_NONE, SP_NULL, SP_ZERO, SP_RANDOM, SP_TTY };
static int special_file(const char* abs) {
    if (!kstrcmp(abs, "/dev/null"))
        return SP_NULL;
    if (!kstrcmp(abs, "/dev/zero"))
        return SP_ZERO;
    if (!kstrcmp(abs, "/dev/urandom") || !kstrcmp(abs, "/dev/random"))
        return SP_RANDOM;
    if (!kstrcmp(abs, "/dev/tty"))
        return SP_TTY;
    return SP_NONE;
}

int fd_ok(i64 fd) {
    return fd >= 0 && fd < PSN_MAX_FDS && fds[fd].kind != FD_NONE;
}

static const char* dir_of(i64 dirfd, i64* err) {
    if (dirfd == AT_FDCWD) /* the working directory is "/" */
        return "/";
    if (!fd_ok(dirfd)) {
        *err = -EBADF;
        return 0;
    }
    if (fds[dirfd].kind != FD_DIR) {
        *err = -ENOTDIR;
        return 0;
    }
    return fds[dirfd].entry == FD_ROOT_OF_EMPTY_TREE ? "/" : fs_path(fds[dirfd].entry);
}

static char pathbuf[GUEST_PATH_MAX];
/* Resolves a user path: returns 0 and fills pathbuf, or -errno. */
static i64 resolve(i64 dirfd, const char* upath) {
    if (!user_str_ok(upath, GUEST_PATH_MAX))
        return user_ok((u64)upath, 1) ? -ENAMETOOLONG : -EFAULT;
    if (upath[0] == 0)
        return -ENOENT;
    i64 err = 0;
    const char* base = dir_of(dirfd, &err);
    if (!base && upath[0] != '/')
        return err;
    return normalise(base ? base : "/", upath, pathbuf);
}

/* ---- stat ---- */
#define FS_DEV 0x2a /* st_dev of every file */
/* Inode numbers: the root of an empty tree, the devices, then tree entries. */
#define INO_EMPTY_ROOT 2
#define INO_TTY 3
#define INO_NULL 4
#define INO_ZERO 5
#define INO_RANDOM 6
#define INO_FIRST_ENTRY 100

static void fill_stat(struct stat* st, u32 mode, u64 size, u64 ino, u64 rdev) {
    memset(st, 0, sizeof *st);
    st->st_dev = FS_DEV;
    st->st_ino = ino;
    st->st_nlink = 1;
    st->st_mode = mode;
    st->st_uid = GUEST_UID;
    st->st_gid = GUEST_UID;
    st->st_rdev = rdev;
    st->st_size = (i64)size;
    st->st_blksize = (mode & S_IFMT) == S_IFCHR ? 1024 : 4096;
    st->st_blocks = (i64)((size + S_BLKSIZE - 1) / S_BLKSIZE);
}

/* The device files, the same whether reached by path or by descriptor. */
static i64 stat_special(int sp, struct stat* st) {
    switch (sp) {
    case SP_TTY:
        fill_stat(st, S_IFCHR | 0620, 0, INO_TTY, MKDEV(136, 0)); /* /dev/pts/0 */
        break;
    case SP_NULL:
        fill_stat(st, S_IFCHR | 0666, 0, INO_NULL, MKDEV(1, 3));
        break;
    case SP_ZERO:
        fill_stat(st, S_IFCHR | 0666, 0, INO_ZERO, MKDEV(1, 5));
        break;
    default: /* SP_RANDOM */
        fill_stat(st, S_IFCHR | 0666, 0, INO_RANDOM, MKDEV(1, 9));
        break;
    }
    return 0;
}

static i64 stat_fd(i64 fd, struct stat* st) {
    switch (fds[fd].kind) {
    case FD_TTY_IN:
    case FD_TTY_OUT:
    case FD_TTY_ERR:
        return stat_special(SP_TTY, st);
    case FD_NULL:
        return stat_special(SP_NULL, st);
    case FD_ZERO:
        return stat_special(SP_ZERO, st);
    case FD_RANDOM:
        return stat_special(SP_RANDOM, st);
    case FD_DIR:
        if (fds[fd].entry == FD_ROOT_OF_EMPTY_TREE) {
            fill_stat(st, S_IFDIR | 0555, 0, INO_EMPTY_ROOT, 0);
            return 0;
        }
        /* fall through */
    case FD_FILE: {
        const struct psn_fs_entry* e = fs_entry(fds[fd].entry);
        fill_stat(st, e->mode, e->size, INO_FIRST_ENTRY + fds[fd].entry, 0);
        return 0;
    }
    }
    return -EBADF;
}
i64 sys_fstat(i64 fd, u64 st) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok(st, sizeof(struct stat)))
        return -EFAULT;
    return stat_fd(fd, (struct stat*)st);
}
/* Also stat and lstat (the tree has no symbolic links). */
i64 sys_newfstatat(i64 dirfd, const char* upath, u64 ust, u64 flags) {
    if (!user_ok(ust, sizeof(struct stat)))
        return -EFAULT;
    struct stat* st = (struct stat*)ust;
    if ((flags & AT_EMPTY_PATH) && user_str_ok(upath, 1) && upath[0] == 0)
        return fd_ok(dirfd) ? stat_fd(dirfd, st) : -EBADF;
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    int sp = special_file(pathbuf);
    if (sp)
        return stat_special(sp, st);
    i64 e = fs_lookup(pathbuf);
    if (e == -1) {
        fill_stat(st, S_IFDIR | 0555, 0, INO_EMPTY_ROOT, 0);
        return 0;
    }
    if (e < 0)
        return e;
    fill_stat(st, fs_entry((u64)e)->mode, fs_entry((u64)e)->size, INO_FIRST_ENTRY + (u64)e, 0);
    return 0;
}

/* ---- descriptors ---- */
static i64 alloc_fd(u64 from) {
    for (u64 i = from; i < PSN_MAX_FDS; i++)
        if (fds[i].kind == FD_NONE)
            return (i64)i;
    return -EMFILE;
}

i64 sys_openat(i64 dirfd, const char* upath, u64 flags) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    u64 acc = flags & O_ACCMODE;
    i64 fd = alloc_fd(3);
    if (fd < 0)
        return fd;
    struct fd* f = &fds[fd];
    f->offset = 0;
    f->flags = (u32)acc;
    switch (special_file(pathbuf)) {
    case SP_NULL:
        f->kind = FD_NULL;
        return fd;
    case SP_ZERO:
        f->kind = FD_ZERO;
        return fd;
    case SP_RANDOM:
        f->kind = FD_RANDOM;
        return fd;
    case SP_TTY:
        f->kind = acc == O_RDONLY ? FD_TTY_IN : FD_TTY_OUT;
        return fd;
    }
    i64 e = fs_lookup(pathbuf);
    if (e < 0 && e != -1)
        return (flags & O_CREAT) ? -EROFS : e; /* O_CREAT in a read-only tree */
    u32 mode = e == -1 ? S_IFDIR : fs_entry((u64)e)->mode;
    if (acc != O_RDONLY || (flags & O_TRUNC)) /* writing */
        return (mode & S_IFMT) == S_IFDIR ? -EISDIR : -EROFS;
    if ((flags & O_DIRECTORY) && (mode & S_IFMT) != S_IFDIR)
        return -ENOTDIR;
    f->kind = (mode & S_IFMT) == S_IFDIR ? FD_DIR : FD_FILE;
    f->entry = (u64)e;
    return fd;
}
i64 sys_close(i64 fd) {
    if (!fd_ok(fd))
        return -EBADF;
    fds[fd].kind = FD_NONE;
    return 0;
}

i64 file_read(struct fd* f, u8* p, u64 n, u64 off) {
    const struct psn_fs_entry* e = fs_entry(f->entry);
    if (off >= e->size)
        return 0;
    if (n > e->size - off)
        n = e->size - off;
    memcpy(p, (const u8*)(boot->rootfs_addr + e->data_off + off), n);
    return (i64)n;
}

i64 sys_read(i64 fd, u8* p, u64 n) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok((u64)p, n))
        return -EFAULT;
    struct fd* f = &fds[fd];
    switch (f->kind) {
    case FD_TTY_IN:
        return read_stdin(p, n);
    case FD_NULL:
        return 0;
    case FD_ZERO:
        memset(p, 0, n);
        return (i64)n;
    case FD_RANDOM:
        random_fill(p, n);
        return (i64)n;
    case FD_FILE: {
        i64 r = file_read(f, p, n, f->offset);
        f->offset += (u64)r;
        return r;
    }
    case FD_DIR:
        return -EISDIR;
    }
    return -EBADF;
}
i64 sys_write(i64 fd, const u8* p, u64 n) {
    if (!fd_ok(fd))
        return -EBADF;
    if (!user_ok((u64)p, n))
        return -EFAULT;
    switch (fds[fd].kind) {
    case FD_TTY_OUT:
        write_out(p, n);
        return (i64)n;
    case FD_TTY_ERR:
        write_err(p, n);
        return (i64)n;
    case FD_NULL:
    case FD_ZERO:
    case FD_RANDOM:
        return (i64)n;
    }
    return -EBADF;
}
i64 sys_rwv(i64 fd, const struct iovec* iov, u64 cnt, int writing) {
    if (cnt > UIO_MAXIOV)
        return -EINVAL;
    if (!user_ok((u64)iov, cnt * sizeof *iov))
        return -EFAULT;
    i64 total = 0;
    for (u64 i = 0; i < cnt; i++) {
        if (!iov[i].iov_len)
            continue;
        i64 r = writing ? sys_write(fd, (const u8*)iov[i].iov_base, iov[i].iov_len)
                        : sys_read(fd, (u8*)iov[i].iov_base, iov[i].iov_len);
        if (r < 0)
            return total ? total : r;
        total += r;
        if ((u64)r < iov[i].iov_len)
            break;
    }
    return total;
}
i64 sys_pread64(i64 fd, u64 buf, u64 n, u64 off) {
    if ((i64)off < 0)
        return -EINVAL;
    if (!fd_ok(fd))
        return -EBADF;
    if (fds[fd].kind != FD_FILE)
        return -ESPIPE;
    if (!user_ok(buf, n))
        return -EFAULT;
    return file_read(&fds[fd], (u8*)buf, n, off);
}
i64 sys_lseek(i64 fd, i64 off, u64 whence) {
    if (!fd_ok(fd))
        return -EBADF;
    struct fd* f = &fds[fd];
    if (f->kind != FD_FILE && f->kind != FD_DIR)
        return f->kind == FD_NULL || f->kind == FD_ZERO || f->kind == FD_RANDOM ? 0 : -ESPIPE;
    i64 end = f->entry == FD_ROOT_OF_EMPTY_TREE ? 0 : (i64)fs_entry(f->entry)->size;
    i64 base = whence == SEEK_SET   ? 0
               : whence == SEEK_CUR ? (i64)f->offset
               : whence == SEEK_END ? end
                                    : -1;
    if (base < 0)
        return -EINVAL;
    i64 pos = base + off;
    if (pos < 0)
        return -EINVAL;
    f->offset = (u64)pos;
    return pos;
}

/* Also access and faccessat2 (whose flags are ignored). */
i64 sys_faccessat(i64 dirfd, const char* upath, u64 mode) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    if (special_file(pathbuf))
        return 0;
    i64 e = fs_lookup(pathbuf);
    if (e < 0 && e != -1)
        return e;
    return (mode & W_OK) ? -EROFS : 0;
}
/* Also readlink. */
i64 sys_readlinkat(i64 dirfd, const char* upath, u64 buf, u64 size) {
    i64 r = resolve(dirfd, upath);
    if (r < 0)
        return r;
    if (!kstrcmp(pathbuf, "/proc/self/exe")) {
        /* Only an absolute program path is meaningful (glibc asserts it). */
        const char* exe = (const char*)boot->exe_path;
        if (!exe || exe[0] != '/')
            return -ENOENT;
        u64 n = kstrlen(exe);
        if (n > size)
            n = size;
        if (!user_ok(buf, n))
            return -EFAULT;
        memcpy((void*)buf, exe, n);
        return (i64)n;
    }
    i64 e = fs_lookup(pathbuf);
    return e < 0 && e != -1 ? e : -EINVAL; /* the tree has no symlinks */
}
i64 sys_getcwd(u64 buf, u64 size) {
    if (size < 2)
        return -ERANGE;
    if (!user_ok(buf, 2))
        return -EFAULT;
    ((char*)buf)[0] = '/';
    ((char*)buf)[1] = 0;
    return 2;
}
i64 sys_fcntl(i64 fd, u64 cmd, u64 arg) {
    if (!fd_ok(fd))
        return -EBADF;
    switch (cmd) {
    case F_DUPFD:
    case F_DUPFD_CLOEXEC: {
        i64 n = alloc_fd(arg);
        if (n >= 0)
            fds[n] = fds[fd];
        return n;
    }
    case F_GETFD:
    case F_SETFD:
    case F_SETFL:
        return 0;
    case F_GETFL:
        return fds[fd].flags;
    }
    return -EINVAL;
}
i64 sys_dup(i64 fd) {
    if (!fd_ok(fd))
        return -EBADF;
    i64 n = alloc_fd(0);
    if (n >= 0)
        fds[n] = fds[fd];
    return n;
}
/* XXX: dup3 compares the whole argument registers for oldfd == newfd, where
 * Linux compares the low 32 bits; kept as it was. */
static i64 dup_onto(u64 oldfd, u64 newfd, int is_dup3) {
    if (!fd_ok((i64)(int)oldfd) || (int)newfd < 0 || (int)newfd >= (int)PSN_MAX_FDS)
        return -EBADF;
    if (is_dup3 && oldfd == newfd)
        return -EINVAL;
    fds[(int)newfd] = fds[(int)oldfd];
    return (int)newfd;
}
i64 sys_dup2(u64 oldfd, u64 newfd) {
    return dup_onto(oldfd, newfd, 0);
}
/* The flags (O_CLOEXEC) are ignored: nothing is ever executed. */
i64 sys_dup3(u64 oldfd, u64 newfd) {
    return dup_onto(oldfd, newfd, 1);
}
