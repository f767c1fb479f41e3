using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.Cli.Native;

/// <summary>File type and device size, which .NET does not expose (it reports a block device's length as 0).</summary>
/// <remarks>
/// Linux's <c>statx</c> gives the type (its <c>struct statx</c> has one layout on every architecture, as
/// <see cref="FileAllocation"/> notes); <c>lseek(fd, 0, SEEK_END)</c> gives a block device's size. Other systems fall
/// back to what .NET can tell: files and directories.
/// </remarks>
internal static partial class FileKinds
{
    private const int AtFdCwd = -100;
    private const uint StatxType = 0x1;
    private const int StatxBufferSize = 256;
    private const int MaskOffset = 0;
    private const int ModeOffset = 28;
    private const int TypeMask = 0xF000;
    private const int RegularType = 0x8000;
    private const int DirectoryType = 0x4000;
    private const int CharacterDeviceType = 0x2000;
    private const int BlockDeviceType = 0x6000;
    private const int SeekEnd = 2;
    private const int NoSuchFile = 2;

    /// <summary>The kind of file at <paramref name="path"/>, following symbolic links.</summary>
    public static FileKind Of(string path)
    {
        if (OperatingSystem.IsLinux() && TryStatxMode(path, out int mode, out bool missing))
        {
            if (missing)
            {
                return FileKind.Missing;
            }
            return (mode & TypeMask) switch
            {
                RegularType => FileKind.Regular,
                DirectoryType => FileKind.Directory,
                CharacterDeviceType or BlockDeviceType => FileKind.Device,
                _ => FileKind.Other,
            };
        }
        if (Directory.Exists(path))
        {
            return FileKind.Directory;
        }
        return File.Exists(path) ? FileKind.Regular : FileKind.Missing;
    }

    /// <summary>Bytes a device holds (0 for character devices such as <c>/dev/null</c>), as <c>lseek(SEEK_END)</c> reports them.</summary>
    /// <exception cref="IOException">The size cannot be read.</exception>
    public static long DeviceSize(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            return RandomAccess.GetLength(handle);
        }
        bool added = false;
        try
        {
            handle.DangerousAddRef(ref added);
            long end = LSeek((int)handle.DangerousGetHandle(), 0, SeekEnd);
            if (end < 0)
            {
                throw new IOException(Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError()));
            }
            return end;
        }
        finally
        {
            if (added)
            {
                handle.DangerousRelease();
            }
        }
    }

    private static bool TryStatxMode(string path, out int mode, out bool missing)
    {
        mode = 0;
        missing = false;
        Span<byte> buffer = stackalloc byte[StatxBufferSize];
        buffer.Clear();
        try
        {
            unsafe
            {
                fixed (byte* statx = buffer)
                {
                    if (Statx(AtFdCwd, path, 0, StatxType, statx) != 0)
                    {
                        // Missing is an answer; any other failure (a loop of links, no permission) is left to the open that follows.
                        missing = Marshal.GetLastPInvokeError() == NoSuchFile;
                        return missing;
                    }
                }
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return false;
        }
        // statx fills the buffer in the machine's own byte order.
        if ((MemoryMarshal.Read<uint>(buffer[MaskOffset..]) & StatxType) == 0)
        {
            return false;
        }
        mode = MemoryMarshal.Read<ushort>(buffer[ModeOffset..]);
        return true;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(int fd, long offset, int whence);
}
