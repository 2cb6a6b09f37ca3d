/*
 * synchro._scan: the scan's hot loop, compiled.
 *
 * list_entries(dir_fd, meta_type, kinds) does what the pure-Python
 * synchro.scan._list_entries does, entry for entry: list the folder open as
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
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

static PyObject *
list_entries(PyObject *module, PyObject *args)
{
    int dir_fd;
    PyTypeObject *meta_type;
    PyObject *kinds;
    if (!PyArg_ParseTuple(args, "iO!O!:list_entries", &dir_fd, &PyType_Type, &meta_type, &PyTuple_Type,
                          &kinds))
        return NULL;
    if (!PyType_IsSubtype(meta_type, &PyTuple_Type) || PyTuple_GET_SIZE(kinds) != 4) {
        PyErr_SetString(PyExc_TypeError, "list_entries: a tuple type and four kinds are needed");
        return NULL;
    }
    PyObject *file_kind = PyTuple_GET_ITEM(kinds, 0), *dir_kind = PyTuple_GET_ITEM(kinds, 1);
    PyObject *link_kind = PyTuple_GET_ITEM(kinds, 2), *special_kind = PyTuple_GET_ITEM(kinds, 3);

    /* As os.listdir(fd): a duplicate of the descriptor, read from the start. */
    int fd, open_err = 0;
    DIR *dir = NULL;
    Py_BEGIN_ALLOW_THREADS
    fd = fcntl(dir_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        open_err = errno;
    } else if ((dir = fdopendir(fd)) == NULL) {
        open_err = errno;
        close(fd);
    }
    Py_END_ALLOW_THREADS
    if (dir == NULL) {
        errno = open_err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    rewinddir(dir);

    PyObject *entries = PyDict_New(), *errors = PyDict_New(), *result = NULL;
    if (entries == NULL || errors == NULL)
        goto finish;
    for (unsigned long count = 1;; count++) {
        if (count % CHECK_SIGNALS_EVERY == 0 && PyErr_CheckSignals() < 0)
            goto finish;
        struct dirent *entry;
        struct stat st;
        int err = 0, skip = 0;
        Py_BEGIN_ALLOW_THREADS
        errno = 0;
        entry = readdir(dir);
        if (entry == NULL) {
            err = errno;
        } else {
            const char *n = entry->d_name;
            skip = n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0'));
            if (!skip && fstatat(dir_fd, n, &st, AT_SYMLINK_NOFOLLOW) != 0)
                err = errno;
        }
        Py_END_ALLOW_THREADS
        if (entry == NULL) {
            if (err != 0) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                goto finish;
            }
            break;
        }
        if (skip || err == ENOENT) /* ENOENT: gone since the listing */
            continue;
        PyObject *name = PyUnicode_DecodeFSDefault(entry->d_name);
        if (name == NULL)
            goto finish;
        int status;
        if (err != 0) {
            status = add_error(errors, name, err);
        } else if (S_ISREG(st.st_mode)) {
            Py_INCREF(Py_None);
            status = add_entry(entries, name, meta_type, file_kind, &st, Py_None);
        } else if (S_ISDIR(st.st_mode)) {
            Py_INCREF(Py_None);
            status = add_entry(entries, name, meta_type, dir_kind, &st, Py_None);
        } else if (S_ISLNK(st.st_mode)) {
            int link_err = 0;
            PyObject *target = link_target(dir_fd, entry->d_name, &link_err);
            if (target != NULL)
                status = add_entry(entries, name, meta_type, link_kind, &st, target);
            else if (link_err == ENOENT)
                status = 0;
            else if (link_err != 0)
                status = add_error(errors, name, link_err);
            else
                status = -1; /* a Python error (memory, decoding) */
        } else {
            Py_INCREF(Py_None);
            status = add_entry(entries, name, meta_type, special_kind, &st, Py_None);
        }
        Py_DECREF(name);
        if (status < 0)
            goto finish;
    }
    result = PyTuple_Pack(2, entries, errors);
finish:
    /* The duplicate shares its position with dir_fd: leave it at the start,
       as os.listdir does, for whoever lists the folder next. */
    rewinddir(dir);
    closedir(dir);
    Py_XDECREF(entries);
    Py_XDECREF(errors);
    return result;
}

static PyMethodDef scan_methods[] = {
    {"list_entries", list_entries, METH_VARARGS,
     "list_entries(dir_fd, meta_type, kinds) -> (entries, errors): see synchro.scan."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "synchro._scan",
    .m_doc = "The scan's hot loop, compiled (see synchro.scan).",
    .m_size = -1,
    .m_methods = scan_methods,
};

PyMODINIT_FUNC
PyInit__scan(void)
{
    return PyModule_Create(&scan_module);
}
