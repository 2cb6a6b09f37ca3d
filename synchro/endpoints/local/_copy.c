/*
 * synchro.endpoints.local._copy: the atomic copy of one small file, in one call.
 *
 * copy_small(src_dir, rep_dir, name, temp, keep_owner, limit[, keep_mode, keep_times]) takes the
 * same steps as synchro.endpoints.local.filecopy.copy_file, in the same order, with the
 * interpreter's lock released: open the source (O_NOFOLLOW, O_NONBLOCK),
 * fstat it, create `temp` in rep_dir (O_EXCL, O_NOFOLLOW, mode 0600), copy
 * the bytes (copy_file_range, else read/write), fstat the source again,
 * then fchown (keep_owner), fchmod (keep_mode, true unless given: false on
 * a replica that cannot hold permission bits), futimens (keep_times, true
 * unless given: false where times cannot be set), close, and rename `temp` over
 * `name`. Any failure after `temp` is created removes it.
 *
 * It returns (status, value); the caller turns a status into its outcome:
 *   COPIED    value = bytes copied: the file is in place
 *   VANISHED  the source is gone (ENOENT on open)
 *   LINKED    the source became a link (ELOOP, ENOTDIR on open)
 *   IRREGULAR the source is no longer a regular file
 *   CHANGED   size, modification or change time moved during the copy
 *   UNLINKED  the source lost its last name during the copy (deleted or
 *             replaced): the caller looks the name up to tell which
 *   DECLINED  larger than `limit`, or holding a hole: nothing was done
 *             (the caller copies it in Python, in chunks that a Ctrl+C can
 *             stop, and a sparse file's data segments only)
 * Any other error raises OSError (with nothing left behind).
 *
 * Why compiled: a first copy of many small files is a dozen system calls
 * per file, and each one made from Python costs about a microsecond more
 * than the call itself; here a file costs the calls.
 *
 * On Linux, parent_death_signal(signum) is prctl(PR_SET_PDEATHSIG): the
 * helper process (synchro.pipeline.helper) asks for it before it plans or copies
 * anything, and from Python only ctypes can ask, which takes the helper
 * 3-4 ms to import.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* The SHA-256 of this file, given by setup.py (-DSYNCHRO_SOURCE_SHA256="..."):
 * synchro uses the module only when it matches the C file shipped beside it,
 * so a module compiled from an older source is never run (compiled.py). */
#ifndef SYNCHRO_SOURCE_SHA256
#define SYNCHRO_SOURCE_SHA256 ""
#endif

enum { COPIED, VANISHED, LINKED, IRREGULAR, CHANGED, UNLINKED, DECLINED };

#define READ_FLAGS (O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
#define WRITE_FLAGS (O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC)
#define MAX_CALL (1L << 30)
#define BUFFER_SIZE (1 << 16)

/* Copy to the end of `src` (or `size` bytes once known); bytes copied, or -1 with errno. */
static long long
copy_data(int src, int dst, long long size)
{
    long long total = 0;
#if defined(__linux__) && !defined(SYNCHRO_NO_COPY_FILE_RANGE)
    /* Linux only: macOS has no copy_file_range (and its sendfile sends to
     * sockets only), so there the copy is read and write. The tests build
     * this file with SYNCHRO_NO_COPY_FILE_RANGE to run that path on Linux. */
    for (;;) {
        ssize_t sent = copy_file_range(src, NULL, dst, NULL, MAX_CALL, 0);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (total == 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
                break; /* no kernel copy between these two: read and write */
            return -1;
        }
        if (sent == 0)
            return total;
        total += sent;
        if (size > 0 && total >= size)
            return total;
    }
#else
    (void)size;
#endif
    char buffer[BUFFER_SIZE];
    for (;;) {
        ssize_t got = read(src, buffer, sizeof buffer);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (got == 0)
            return total;
        for (ssize_t done = 0; done < got;) {
            ssize_t put = write(dst, buffer + done, (size_t)(got - done));
            if (put < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            done += put;
        }
        total += got;
    }
}

/*
 * Whether the file holds a hole, leaving its offset at 0 when it does not.
 * Fewer bytes allocated than its size is the cheap hint, true of a
 * compressed file too (ZFS, btrfs): only then is the kernel asked where
 * the first hole is, and a compressed file (no hole before the end) stays
 * on this fast path. A file system without SEEK_HOLE: no hole to keep.
 */
static int
has_hole(int fd, const struct stat *st)
{
    if ((long long)st->st_blocks * 512 >= (long long)st->st_size)
        return 0;
#ifdef SEEK_HOLE
    off_t hole = lseek(fd, 0, SEEK_HOLE);
    if (hole >= 0 && hole < st->st_size)
        return 1;
    if (hole >= 0 && lseek(fd, 0, SEEK_SET) != 0)
        return 1; /* cannot go back: the Python copy opens the file anew */
#endif
    return 0;
}

static int
same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* The copy itself; (status, bytes copied), or NULL with OSError set. */
static PyObject *
run_copy(int src_dir, int rep_dir, const char *name, const char *temp, int keep_owner, int keep_mode,
         int keep_times, long long limit)
{
    int status = COPIED, err = 0;
    long long copied = 0;
    Py_BEGIN_ALLOW_THREADS
    int src = openat(src_dir, name, READ_FLAGS);
    if (src < 0) {
        if (errno == ENOENT)
            status = VANISHED;
        else if (errno == ELOOP || errno == ENOTDIR)
            status = LINKED;
        else
            err = errno;
    } else {
        struct stat before, after;
        int dst;
        if (fstat(src, &before) != 0) {
            err = errno;
        } else if (!S_ISREG(before.st_mode)) {
            status = IRREGULAR;
        } else if (before.st_size > limit || has_hole(src, &before)) {
            status = DECLINED;
        } else if ((dst = openat(rep_dir, temp, WRITE_FLAGS, 0600)) < 0) {
            err = errno;
        } else {
            copied = copy_data(src, dst, (long long)before.st_size);
            if (copied < 0 || fstat(src, &after) != 0) {
                err = errno;
            } else if (after.st_nlink == 0 && before.st_nlink > 0) {
                status = UNLINKED;
            } else if (copied != (long long)before.st_size || after.st_size != before.st_size
                       || !same_time(&after.st_mtim, &before.st_mtim)
                       || !same_time(&after.st_ctim, &before.st_ctim)) {
                status = CHANGED;
            } else {
                struct timespec times[2] = {before.st_atim, before.st_mtim};
                /* chown before chmod: chown clears set-user-ID bits. */
                if ((keep_owner && fchown(dst, before.st_uid, before.st_gid) != 0)
                    || (keep_mode && fchmod(dst, before.st_mode & 07777) != 0)
                    || (keep_times && futimens(dst, times) != 0))
                    err = errno;
            }
            if (close(dst) != 0 && err == 0 && status == COPIED)
                err = errno;
            if (err == 0 && status == COPIED && renameat(rep_dir, temp, rep_dir, name) != 0)
                err = errno;
            if (err != 0 || status != COPIED)
                unlinkat(rep_dir, temp, 0); /* not installed: the temporary goes */
        }
        close(src);
    }
    Py_END_ALLOW_THREADS
    if (err != 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return Py_BuildValue("(iL)", status, status == COPIED ? copied : 0LL);
}

static PyObject *
copy_small(PyObject *module, PyObject *args)
{
    int src_dir, rep_dir, keep_owner, keep_mode = 1, keep_times = 1;
    PyObject *name = NULL, *temp = NULL, *result = NULL;
    long long limit;
    if (PyArg_ParseTuple(args, "iiO&O&pL|pp:copy_small", &src_dir, &rep_dir, PyUnicode_FSConverter, &name,
                         PyUnicode_FSConverter, &temp, &keep_owner, &limit, &keep_mode, &keep_times))
        result = run_copy(src_dir, rep_dir, PyBytes_AS_STRING(name), PyBytes_AS_STRING(temp), keep_owner,
                          keep_mode, keep_times, limit);
    Py_XDECREF(name);
    Py_XDECREF(temp);
    return result;
}

#ifdef __linux__
static PyObject *
parent_death_signal(PyObject *module, PyObject *arg)
{
    long signum = PyLong_AsLong(arg);
    if (signum == -1 && PyErr_Occurred())
        return NULL;
    if (prctl(PR_SET_PDEATHSIG, (unsigned long)signum, 0UL, 0UL, 0UL) != 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}
#endif

static PyMethodDef copy_methods[] = {
    {"copy_small", copy_small, METH_VARARGS,
     "copy_small(src_dir, rep_dir, name, temp, keep_owner, limit[, keep_mode, keep_times]) -> (status, bytes): "
     "see "
     "synchro.endpoints.local.filecopy."},
#ifdef __linux__
    {"parent_death_signal", parent_death_signal, METH_O,
     "parent_death_signal(signum): ask Linux to send signum to this process when its parent dies."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef copy_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "synchro.endpoints.local._copy",
    .m_doc = "The atomic copy of one small file, in one call (see synchro.endpoints.local.filecopy).",
    .m_size = -1,
    .m_methods = copy_methods,
};

PyMODINIT_FUNC
PyInit__copy(void)
{
    PyObject *module = PyModule_Create(&copy_module);
    if (module != NULL && PyModule_AddStringConstant(module, "SOURCE_SHA256", SYNCHRO_SOURCE_SHA256) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
