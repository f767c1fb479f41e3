using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>
/// <c>fallocate(2)</c> for zeroing and deallocating ranges of a file without writing data: a hole punched with
/// <c>FALLOC_FL_PUNCH_HOLE</c> frees the blocks, <c>FALLOC_FL_ZERO_RANGE</c> keeps them allocated. Both keep the file
/// length (<c>FALLOC_FL_KEEP_SIZE</c>). Elsewhere than Linux, or where the file system lacks a mode, the caller falls
/// back to writing zeros.
/// </summary>
internal static partial class LinuxFileSpace
{
    private const int KeepSize = 0x01;   // FALLOC_FL_KEEP_SIZE
    private const int PunchHole = 0x02;  // FALLOC_FL_PUNCH_HOLE
    private const int ZeroRange = 0x10;  // FALLOC_FL_ZERO_RANGE
    private const int NotSupported = 95; // EOPNOTSUPP

    /// <summary>Zeros <paramref name="length"/> bytes at <paramref name="offset"/>, deallocating them when <paramref name="deallocate"/>; returns 0 or the errno.</summary>
    public static int Zero(SafeFileHandle handle, long offset, long length, bool deallocate)
    {
        if (!OperatingSystem.IsLinux() || !Environment.Is64BitProcess)
        {
            return NotSupported;
        }
        try
        {
            return Fallocate(handle, (deallocate ? PunchHole : ZeroRange) | KeepSize, offset, length) == -1 ? Marshal.GetLastPInvokeError() : 0;
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return NotSupported;
        }
    }

    /// <summary><c>int fallocate(int fd, int mode, off_t offset, off_t len)</c> with 64-bit <c>off_t</c>.</summary>
    [LibraryImport("libc", EntryPoint = "fallocate", SetLastError = true)]
    private static partial int Fallocate(SafeFileHandle handle, int mode, long offset, long length);
}
