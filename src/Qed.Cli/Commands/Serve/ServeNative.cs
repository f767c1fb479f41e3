using System.Runtime.InteropServices;

namespace Qed.Cli.Commands.Serve;

/// <summary>The few libc calls <c>qed serve</c> needs that .NET lacks: a file's type, a new session, replacing standard streams.</summary>
internal static partial class ServeNative
{
    private const int AtFdCwd = -100;
    private const int AtSymlinkNoFollow = 0x100;
    private const uint StatxType = 0x1;
    private const int StatxBufferSize = 256;
    private const int ModeOffset = 28;
    private const int TypeMask = 0xF000;
    private const int SocketType = 0xC000;
    private const int OpenReadWrite = 2;

    /// <summary>True when <paramref name="path"/> itself (a link is not followed) is a unix socket.</summary>
    public static bool IsSocket(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }
        Span<byte> buffer = stackalloc byte[StatxBufferSize];
        buffer.Clear();
        try
        {
            unsafe
            {
                fixed (byte* statx = buffer)
                {
                    if (Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType, statx) != 0)
                    {
                        return false;
                    }
                }
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
        // statx fills the buffer in the machine's own byte order.
        return (MemoryMarshal.Read<ushort>(buffer[ModeOffset..]) & TypeMask) == SocketType;
    }

    /// <summary>Starts a new session (leaves the caller's terminal and process group), as a daemon does; false when the system refused.</summary>
    public static bool StartSession()
    {
        try
        {
            return SetSid() >= 0;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
    }

    /// <summary>
    /// Lets go of the starter's standard streams: stdin and stdout (and stderr unless <paramref name="keepStderr"/>) are
    /// pointed at <c>/dev/null</c>, and so is every other descriptor open on the same pipe, terminal or file (the
    /// runtime's console streams are duplicates of 1 and 2). Otherwise a caller reading our output to its end, as
    /// <c>$(qed serve --fork ...)</c> does, would wait for the server to exit.
    /// </summary>
    public static void DetachFromStarter(bool keepStderr)
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }
        try
        {
            string? stderr = Target(2);
            var detach = new HashSet<string>(StringComparer.Ordinal);
            foreach (int fd in keepStderr ? [0, 1] : (int[])[0, 1, 2])
            {
                if (Target(fd) is { } target)
                {
                    detach.Add(target);
                }
            }
            if (keepStderr && stderr is not null)
            {
                detach.Remove(stderr);
            }

            int devNull = Open("/dev/null", OpenReadWrite);
            if (devNull < 0)
            {
                return;
            }
            var open = new List<int>();
            foreach (string entry in Directory.GetFileSystemEntries("/proc/self/fd"))
            {
                if (int.TryParse(Path.GetFileName(entry), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int fd))
                {
                    open.Add(fd);
                }
            }
            foreach (int fd in open)
            {
                if (fd != devNull && (fd <= 1 || (fd == 2 && !keepStderr) || (Target(fd) is { } target && detach.Contains(target))))
                {
                    Dup2(devNull, fd);
                }
            }
            Close(devNull);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or EntryPointNotFoundException or DllNotFoundException)
        {
        }
    }

    /// <summary>What descriptor <paramref name="fd"/> refers to (<c>pipe:[123]</c>, <c>/dev/pts/0</c>), or null.</summary>
    private static string? Target(int fd)
    {
        try
        {
            return new FileInfo($"/proc/self/fd/{fd}").LinkTarget;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "setsid", SetLastError = true)]
    private static partial int SetSid();

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "dup2", SetLastError = true)]
    private static partial int Dup2(int oldFd, int newFd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);
}
