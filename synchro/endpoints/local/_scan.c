/*
 * synchro.endpoints.local._scan: the scan's hot loop, compiled.
 *
 * list_entries(dir_fd, meta_type, kinds) does what the pure-Python
 * synchro.endpoints.local.scan._list_entries does, entry for entry: list the folder open as
 * dir_fd and lstat each entry relative to it (fstatat with
 * AT_SYMLINK_NOFOLLOW; readlinkat for links). It returns (entries, errors):
 * entries maps each name to a meta_type tuple (kind, size, mtime_ns, mode,
 * uid, gid, target); errors maps the names that could not be read to the
 * error's text. An entry gone between the listing and its lstat (ENOENT) is
 * left out. An error listing the folder itself raises OSError.
 *
 * Why compiled: a run spends most of its time on this loop (once per entry
 * of both trees), and in Python each entry costs about 2 us beyond the
 * kernel's lstat (a stat_result of 20 fields, then the tuple made from it).
 * Here an entry costs the system calls and one tuple.
 *
 * Names are decoded as os.listdir decodes them (the file system encoding,
 * surrogateescape); error texts as OSError.strerror is (strerror, the
 * locale's encoding).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

/* The SHA-256 of this file, given by setup.py (-DSYNCHRO_SOURCE_SHA256="..."):
 * synchro uses the module only when it matches the C file shipped beside it,
 * so a module compiled from an older source is never run (compiled.py). */
#ifndef SYNCHRO_SOURCE_SHA256
#define SYNCHRO_SOURCE_SHA256 ""
#endif

/* Signals (Ctrl+C) are looked at after this many entries of a large folder. */
#define CHECK_SIGNALS_EVERY 1024

static PyObject *
error_text(int err)
{
    return PyUnicode_DecodeLocale(strerror(err), "surrogateescape");
}

/* A uid or gid as os.stat gives it: -1 for (uid_t)-1, else unsigned. */
static PyObject *
id_object(unsigned long long value, unsigned long long all_ones)
{
    if (value == all_ones)
        return PyLong_FromLong(-1);
    return PyLong_FromUnsignedLongLong(value);
}

/* Nanoseconds since the epoch, exact beyond the range of 64 bits too. */
static PyObject *
ns_object(const struct timespec *ts)
{
    long long sec = (long long)ts->tv_sec;
    if (sec > -9000000000LL && sec < 9000000000LL)
        return PyLong_FromLongLong(sec * 1000000000LL + (long long)ts->tv_nsec);
    PyObject *s = PyLong_FromLongLong(sec), *billion = PyLong_FromLong(1000000000L);
    PyObject *n = PyLong_FromLong((long)ts->tv_nsec), *product = NULL, *sum = NULL;
    if (s && billion && n && (product = PyNumber_Multiply(s, billion)))
        sum = PyNumber_Add(product, n);
    Py_XDECREF(s);
    Py_XDECREF(billion);
    Py_XDECREF(n);
    Py_XDECREF(product);
    return sum;
}

/* The text of link `name`, or NULL with *err set (errno) or a Python error. */
static PyObject *
link_target(int dir_fd, const char *name, int *err)
{
    size_t size = 4096;
    for (;;) {
        char *buf = malloc(size);
        if (buf == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        ssize_t len;
        Py_BEGIN_ALLOW_THREADS
        len = readlinkat(dir_fd, name, buf, size);
        Py_END_ALLOW_THREADS
        if (len < 0) {
            *err = errno;
            free(buf);
            return NULL;
        }
        if ((size_t)len < size) {
            PyObject *text = PyUnicode_DecodeFSDefaultAndSize(buf, len);
            free(buf);
            return text;
        }
        free(buf); /* possibly cut short: try again with more room */
        size *= 2;
    }
}

/* entries[name] = meta_type((kind, size, mtime_ns, mode, uid, gid, target)); steals target. */
static int
add_entry(PyObject *entries, PyObject *name, PyTypeObject *meta_type, PyObject *kind,
          const struct stat *st, PyObject *target)
{
    /* A tuple subclass instance, filled as tuple.__new__(meta_type, ...) fills it. */
    PyObject *meta = meta_type->tp_alloc(meta_type, 7);
    if (meta == NULL) {
        Py_DECREF(target);
        return -1;
    }
    Py_INCREF(kind);
    PyTuple_SET_ITEM(meta, 0, kind);
    PyTuple_SET_ITEM(meta, 1, PyLong_FromLongLong((long long)st->st_size));
    PyTuple_SET_ITEM(meta, 2, ns_object(&st->st_mtim));
    PyTuple_SET_ITEM(meta, 3, PyLong_FromLong((long)(st->st_mode & 07777)));
    PyTuple_SET_ITEM(meta, 4, id_object(st->st_uid, (uid_t)-1));
    PyTuple_SET_ITEM(meta, 5, id_object(st->st_gid, (gid_t)-1));
    PyTuple_SET_ITEM(meta, 6, target);
    int status = -1;
    for (Py_ssize_t i = 1; i < 6; i++) {
        if (PyTuple_GET_ITEM(meta, i) == NULL)
            goto done; /* a failed allocation: its error is set */
    }
    status = PyDict_SetItem(entries, name, meta);
done:
    Py_DECREF(meta);
    return status;
}

static int
add_error(PyObject *errors, PyObject *name, int err)
{
    PyObject *text = error_text(err);
    if (text == NULL)
        return -1;
    int status = PyDict_SetItem(errors, name, text);
    Py_DECREF(text);
    return status;
}

/* What one listing adds to: the two dicts, and how entries are made. */
struct listing {
    int dir_fd;
    PyObject *entries, *errors;
    PyTypeObject *meta_type;
    PyObject *file_kind, *dir_kind, *link_kind, *special_kind;
    unsigned long count;
};

/* lstat entry `n` relative to the folder and add it to entries or errors;
   0, or -1 with a Python error set. */
static int
add_name(struct listing *l, const char *n)
{
    if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
        return 0;
    if (++l->count % CHECK_SIGNALS_EVERY == 0 && PyErr_CheckSignals() < 0)
        return -1;
    struct stat st;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fstatat(l->dir_fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0)
        err = errno;
    Py_END_ALLOW_THREADS
    if (err == ENOENT) /* gone since the listing */
        return 0;
    PyObject *name = PyUnicode_DecodeFSDefault(n);
    if (name == NULL)
        return -1;
    int status;
    if (err != 0) {
        status = add_error(l->errors, name, err);
    } else if (S_ISREG(st.st_mode)) {
        Py_INCREF(Py_None);
        status = add_entry(l->entries, name, l->meta_type, l->file_kind, &st, Py_None);
    } else if (S_ISDIR(st.st_mode)) {
        Py_INCREF(Py_None);
        status = add_entry(l->entries, name, l->meta_type, l->dir_kind, &st, Py_None);
    } else if (S_ISLNK(st.st_mode)) {
        int link_err = 0;
        PyObject *target = link_target(l->dir_fd, n, &link_err);
        if (target != NULL)
            status = add_entry(l->entries, name, l->meta_type, l->link_kind, &st, target);
        else if (link_err == ENOENT)
            status = 0;
        else if (link_err != 0)
            status = add_error(l->errors, name, link_err);
        else
            status = -1; /* a Python error (memory, decoding) */
    } else {
        Py_INCREF(Py_None);
        status = add_entry(l->entries, name, l->meta_type, l->special_kind, &st, Py_None);
    }
    Py_DECREF(name);
    return status;
}

static PyObject *
os_error(int err)
{
    errno = err;
    return PyErr_SetFromErrno(PyExc_OSError);
}

#ifdef __linux__
/* The records getdents64 fills a buffer with. */
struct linux_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

#define NAMES_BUFFER (32 * 1024)

/* Linux: getdents64 on the folder's own descriptor, read from the start and
   put back there, as os.listdir leaves it for whoever lists the folder
   next. Four system calls fewer per folder than a DIR stream on a
   duplicate (dup, two fcntl, close), in a walk that lists every folder of
   both trees. */
static int
add_names(struct listing *l)
{
    char *buf = malloc(NAMES_BUFFER);
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int status = 0;
    if (lseek(l->dir_fd, 0, SEEK_SET) < 0) {
        os_error(errno);
        status = -1;
    }
    while (status == 0) {
        long got;
        Py_BEGIN_ALLOW_THREADS
        got = syscall(SYS_getdents64, l->dir_fd, buf, NAMES_BUFFER);
        Py_END_ALLOW_THREADS
        if (got < 0) {
            os_error(errno);
            status = -1;
        }
        if (got <= 0)
            break;
        for (long at = 0; at < got && status == 0;) {
            struct linux_dirent64 *entry = (struct linux_dirent64 *)(buf + at);
            at += entry->d_reclen;
            status = add_name(l, entry->d_name);
        }
    }
    free(buf);
    if (lseek(l->dir_fd, 0, SEEK_SET) < 0 && status == 0) {
        os_error(errno);
        status = -1;
    }
    return status;
}
#else
/* Elsewhere, as os.listdir(fd): a DIR stream on a duplicate of the
   descriptor, read from the start and put back there. */
static int
add_names(struct listing *l)
{
    int fd, open_err = 0;
    DIR *dir = NULL;
    Py_BEGIN_ALLOW_THREADS
    fd = fcntl(l->dir_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        open_err = errno;
    } else if ((dir = fdopendir(fd)) == NULL) {
        open_err = errno;
        close(fd);
    }
    Py_END_ALLOW_THREADS
    if (dir == NULL) {
        os_error(open_err);
        return -1;
    }
    rewinddir(dir);
    int status = 0;
    while (status == 0) {
        struct dirent *entry;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        errno = 0;
        entry = readdir(dir);
        err = errno;
        Py_END_ALLOW_THREADS
        if (entry == NULL) {
            if (err != 0) {
                os_error(err);
                status = -1;
            }
            break;
        }
        status = add_name(l, entry->d_name);
    }
    /* The duplicate shares its position with dir_fd: back to the start. */
    rewinddir(dir);
    closedir(dir);
    return status;
}
#endif

static PyObject *
list_entries(PyObject *module, PyObject *args)
{
    struct listing l = {0};
    PyObject *kinds;
    if (!PyArg_ParseTuple(args, "iO!O!:list_entries", &l.dir_fd, &PyType_Type, &l.meta_type, &PyTuple_Type,
                          &kinds))
        return NULL;
    if (!PyType_IsSubtype(l.meta_type, &PyTuple_Type) || PyTuple_GET_SIZE(kinds) != 4) {
        PyErr_SetString(PyExc_TypeError, "list_entries: a tuple type and four kinds are needed");
        return NULL;
    }
    l.file_kind = PyTuple_GET_ITEM(kinds, 0);
    l.dir_kind = PyTuple_GET_ITEM(kinds, 1);
    l.link_kind = PyTuple_GET_ITEM(kinds, 2);
    l.special_kind = PyTuple_GET_ITEM(kinds, 3);
    PyObject *result = NULL;
    l.entries = PyDict_New();
    l.errors = PyDict_New();
    if (l.entries != NULL && l.errors != NULL && add_names(&l) == 0)
        result = PyTuple_Pack(2, l.entries, l.errors);
    Py_XDECREF(l.entries);
    Py_XDECREF(l.errors);
    return result;
}

static PyMethodDef scan_methods[] = {
    {"list_entries", list_entries, METH_VARARGS,
     "list_entries(dir_fd, meta_type, kinds) -> (entries, errors): see synchro.endpoints.local.scan."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "synchro.endpoints.local._scan",
    .m_doc = "The scan's hot loop, compiled (see synchro.endpoints.local.scan).",
    .m_size = -1,
    .m_methods = scan_methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    PyObject *module = PyModule_Create(&scan_module);
    if (module != NULL && PyModule_AddStringConstant(module, "SOURCE_SHA256", SYNCHRO_SOURCE_SHA256) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
