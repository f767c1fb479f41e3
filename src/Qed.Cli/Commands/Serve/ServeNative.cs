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

    /// <summary>Points the standard streams numbered in <paramref name="fds"/> at <c>/dev/null</c>, so a daemon holds no pipe or terminal of its starter.</summary>
    public static void DetachStandardStreams(params ReadOnlySpan<int> fds)
    {
        try
        {
            int devNull = Open("/dev/null", OpenReadWrite);
            if (devNull < 0)
            {
                return;
            }
            foreach (int fd in fds)
            {
                Dup2(devNull, fd);
            }
            if (!fds.Contains(devNull))
            {
                Close(devNull);
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
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
