using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>
/// The Linux lock calls: open file description locks (<c>fcntl(F_OFD_SETLK)</c>, <c>F_OFD_GETLK</c>) on single bytes,
/// the locks QEMU takes on images, and dropping the <c>flock</c> lock .NET takes on every file it opens.
/// </summary>
/// <remarks>
/// OFD locks belong to the open file description, not the process: closing the handle releases them, two handles on one
/// file conflict even inside one process, and unrelated opens of the same file (which drop POSIX locks) leave them alone.
/// The <c>struct flock</c> layout and the command numbers are those of 64-bit Linux (x86-64 and arm64 share them).
/// Like QEMU (<c>qemu_probe_lock_ops</c>), support is probed once per process with <c>F_OFD_GETLK</c> on
/// <c>/dev/null</c>; without it (another operating system, a 32-bit process or a kernel older than 3.15) images are
/// opened without locks, as QEMU's <c>locking=auto</c> does.
/// </remarks>
internal static partial class LinuxFileLocks
{
    private const int GetLockCommand = 36; // F_OFD_GETLK
    private const int SetLockCommand = 37; // F_OFD_SETLK
    private const short ReadLock = 0;      // F_RDLCK
    private const short WriteLock = 1;     // F_WRLCK
    private const short Unlocked = 2;      // F_UNLCK
    private const short FromStart = 0;     // SEEK_SET
    private const int FlockUnlock = 8;     // LOCK_UN

    /// <summary>errno values for "another process holds a conflicting lock": QEMU leaves the reason out of its message for these.</summary>
    public const int TryAgain = 11;        // EAGAIN
    private const int AccessDenied = 13;   // EACCES

    private static readonly Lazy<bool> s_supported = new(Probe);

    /// <summary>True when the kernel has OFD locks and this process can call them.</summary>
    public static bool IsSupported => s_supported.Value;

    /// <summary>True for the errno values that only mean "somebody else holds it".</summary>
    public static bool IsConflict(int errno) => errno is TryAgain or AccessDenied;

    /// <summary>Takes a shared (read) lock on byte <paramref name="offset"/>; returns 0 or the errno.</summary>
    public static int LockShared(SafeFileHandle handle, long offset) => Set(handle, offset, ReadLock);

    /// <summary>Releases this handle's lock on byte <paramref name="offset"/>; returns 0 or the errno.</summary>
    public static int Unlock(SafeFileHandle handle, long offset) => Set(handle, offset, Unlocked);

    /// <summary>
    /// Asks whether an exclusive lock on byte <paramref name="offset"/> could be taken, i.e. whether another open file
    /// description holds any lock there (this handle's own locks never conflict). Returns 0 when free,
    /// <see cref="TryAgain"/> when held by another, or the errno of a failed call.
    /// </summary>
    public static int TestExclusive(SafeFileHandle handle, long offset)
    {
        var request = new FileLock { Type = WriteLock, Whence = FromStart, Start = offset, Length = 1 };
        if (Fcntl(handle, GetLockCommand, ref request) == -1)
        {
            return Marshal.GetLastPInvokeError();
        }
        return request.Type == Unlocked ? 0 : TryAgain;
    }

    /// <summary>
    /// Drops the whole-file <c>flock(LOCK_SH)</c> that .NET takes when it opens a file. Locally it is independent of
    /// QEMU's locks, but NFS and SMB clients emulate <c>flock</c> with a byte-range lock over the whole file, which the
    /// server then shows to every QEMU testing a lock byte (a read-only qed would refuse all other users). qed's own
    /// locks are QEMU's, so .NET's is not needed. Best effort: a failure leaves .NET's lock as it was.
    /// </summary>
    public static void DropFlock(SafeFileHandle handle)
    {
        if (IsSupported)
        {
            Flock(handle, FlockUnlock);
        }
    }

    /// <summary>The C library's text for an errno value (<c>strerror</c>).</summary>
    public static string Describe(int errno) => Marshal.GetPInvokeErrorMessage(errno);

    private static int Set(SafeFileHandle handle, long offset, short type)
    {
        var request = new FileLock { Type = type, Whence = FromStart, Start = offset, Length = 1 };
        return Fcntl(handle, SetLockCommand, ref request) == -1 ? Marshal.GetLastPInvokeError() : 0;
    }

    private static bool Probe()
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess)
        {
            return false;
        }
        try
        {
            using var handle = File.OpenHandle("/dev/null", FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            var request = new FileLock { Type = WriteLock, Whence = FromStart, Start = 0, Length = 0 };
            return Fcntl(handle, GetLockCommand, ref request) == 0;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    /// <summary><c>fcntl(fd, cmd, struct flock *)</c>; fcntl is variadic, but on 64-bit Linux a pointer third argument is passed as in a fixed call.</summary>
    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    private static partial int Fcntl(SafeFileHandle handle, int command, ref FileLock request);

    [LibraryImport("libc", EntryPoint = "flock", SetLastError = true)]
    private static partial int Flock(SafeFileHandle handle, int operation);

    /// <summary><c>struct flock</c> of 64-bit Linux: 32 bytes, with padding after <c>l_whence</c> and after <c>l_pid</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct FileLock
    {
        public short Type;
        public short Whence;
        public long Start;
        public long Length;
        public int Pid;
    }
}
