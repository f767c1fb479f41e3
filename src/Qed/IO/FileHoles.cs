using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Qed.IO;

/// <summary>Where a file's holes are: <c>lseek</c> with <c>SEEK_DATA</c> and <c>SEEK_HOLE</c> (Linux).</summary>
/// <remarks>
/// Only a hint, as for QEMU's file driver: a range reported as data may still read as zeros, and a file system that
/// does not track holes reports the whole file as data (Linux's generic <c>lseek</c> does exactly that). Any failure,
/// or another operating system, also means "data", which is always safe. <c>lseek</c> moves the descriptor's position,
/// which nothing here uses: all I/O names its offset.
/// </remarks>
internal static partial class FileHoles
{
    private const int SeekData = 3; // SEEK_DATA
    private const int SeekHole = 4; // SEEK_HOLE
    private const int NoSuchAddress = 6; // ENXIO: no data at or after the offset

    /// <summary>True where <see cref="Probe"/> asks the file system (64-bit Linux); elsewhere it reports everything as data.</summary>
    public static bool IsSupported => OperatingSystem.IsLinux() && Environment.Is64BitProcess;

    /// <summary>
    /// Describes the range at <paramref name="offset"/>, at most <paramref name="length"/> bytes: whether it holds data
    /// (false: a hole, which reads as zeros) and how long the run of that kind is.
    /// </summary>
    public static (bool IsData, long Length) Probe(SafeFileHandle handle, long offset, long length)
    {
        if (!IsSupported)
        {
            return (true, length);
        }
        long data = Seek(handle, offset, SeekData);
        if (data < 0)
        {
            // ENXIO: only a hole up to the end of the file; anything else: the file system cannot say.
            return Marshal.GetLastPInvokeError() == NoSuchAddress ? (false, length) : (true, length);
        }
        if (data > offset)
        {
            return (false, Math.Min(data - offset, length));
        }
        long hole = Seek(handle, offset, SeekHole);
        // The end of the file counts as a hole; a hole at or before the offset means the file changed meanwhile.
        return (true, hole > offset ? Math.Min(hole - offset, length) : length);
    }

    private static long Seek(SafeFileHandle handle, long offset, int whence)
    {
        try
        {
            return LSeek(handle, offset, whence);
        }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            return -1;
        }
    }

    [LibraryImport("libc", EntryPoint = "lseek", SetLastError = true)]
    private static partial long LSeek(SafeFileHandle handle, long offset, int whence);
}
