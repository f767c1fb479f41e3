using System.Runtime.InteropServices;

namespace Qed.Cli.Native;

/// <summary>How much space the host file system really allocated for a file (<c>st_blocks * 512</c>), which is what qemu-img reports as "disk size".</summary>
/// <remarks>
/// .NET exposes no block count, so this calls Linux's <c>statx</c>: unlike <c>struct stat</c>, <c>struct statx</c> has the
/// same layout on every architecture, which keeps the P/Invoke correct without per-platform structs.
/// </remarks>
internal static partial class FileAllocation
{
    private const int AtFdCwd = -100;
    private const uint StatxBlocks = 0x400;
    private const int StatxBufferSize = 256;
    private const int MaskOffset = 0;
    private const int BlocksOffset = 48;
    private const long BlockSize = 512;

    /// <summary>Allocated bytes of the file at <paramref name="path"/>, or null when the platform cannot tell.</summary>
    public static long? GetAllocatedBytes(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }
        Span<byte> buffer = stackalloc byte[StatxBufferSize];
        buffer.Clear();
        try
        {
            unsafe
            {
                fixed (byte* statx = buffer)
                {
                    if (Statx(AtFdCwd, path, 0, StatxBlocks, statx) != 0)
                    {
                        return null;
                    }
                }
            }
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return null;
        }
        // statx fills the buffer in the machine's own byte order.
        uint mask = MemoryMarshal.Read<uint>(buffer[MaskOffset..]);
        if ((mask & StatxBlocks) == 0)
        {
            return null;
        }
        ulong blocks = MemoryMarshal.Read<ulong>(buffer[BlocksOffset..]);
        return (long)blocks * BlockSize;
    }

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static unsafe partial int Statx(int directoryFd, string path, int flags, uint mask, byte* buffer);
}
