using System.Buffers;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;
using Qed.Nbd.Transport;

namespace Qed.Nbd.Server.Transmission;

/// <summary>
/// Sends READ data straight from the image file's page cache to a unix socket with <c>sendfile</c> (the kernel passes
/// page references; no copy into our memory and out again, which is most of what a large READ costs). Only for plain
/// unix sockets on Linux; what the socket does not take at once is read and written the ordinary way, so back-pressure
/// never blocks a thread. The image files are opened read-only a second time without locks of any kind (the engine's
/// image locks are open-file-description locks, untouched by another descriptor).
/// </summary>
internal sealed partial class FileRangeSender : IDisposable
{
    /// <summary>READs at least this large go out with sendfile; smaller ones are cheaper copied and batched.</summary>
    public const int MinimumLength = 64 * 1024;

    private const int SocketBufferSize = 1024 * 1024; // bounded: a client that reads nothing pins this much kernel memory
    private const int Eagain = 11;
    private const int OpenReadOnlyCloseOnExec = 0x80000; // O_RDONLY | O_CLOEXEC

    private readonly object _gate = new();
    private readonly Dictionary<string, int> _descriptors = new(StringComparer.Ordinal);
    private readonly int _socketDescriptor;
    private readonly NbdTransport _transport;
    private volatile bool _disabled;

    private FileRangeSender(Socket socket, NbdTransport transport)
    {
        _socketDescriptor = (int)socket.Handle;
        _transport = transport;
    }

    /// <summary>A sender for <paramref name="transport"/>, or null when it is not a plain unix socket on Linux.</summary>
    public static FileRangeSender? For(NbdTransport transport)
    {
        if (!OperatingSystem.IsLinux() || transport is not SocketTransport { Socket: { AddressFamily: AddressFamily.Unix } socket })
        {
            return null;
        }

        try
        {
            // Room for a whole large reply, so sendfile rarely stops short.
            socket.SendBufferSize = Math.Max(socket.SendBufferSize, SocketBufferSize);
        }
        catch (SocketException)
        {
        }

        return new FileRangeSender(socket, transport);
    }

    /// <summary>A descriptor of <paramref name="path"/> to send from, or -1 when it cannot be had (then the data is copied).</summary>
    public int DescriptorFor(string path)
    {
        if (_disabled)
        {
            return -1;
        }

        lock (_gate)
        {
            if (!_descriptors.TryGetValue(path, out int descriptor))
            {
                descriptor = Open(path, OpenReadOnlyCloseOnExec);
                if (descriptor >= 0 && !OpenElsewhere(descriptor))
                {
                    _ = Close(descriptor);
                    descriptor = -1;
                }

                _descriptors[path] = descriptor; // -1 is remembered too: no retry per request
            }

            return descriptor;
        }
    }

    /// <summary>Sends <paramref name="length"/> bytes of <paramref name="descriptor"/> at <paramref name="offset"/>, after the headers already written.</summary>
    public async ValueTask SendAsync(int descriptor, long offset, long length, CancellationToken cancellationToken)
    {
        if (!_disabled)
        {
            while (length > 0)
            {
                long sent = SendFile(_socketDescriptor, descriptor, ref offset, (nuint)Math.Min(length, int.MaxValue));
                if (sent > 0)
                {
                    length -= sent;
                    continue;
                }

                if (sent < 0 && Marshal.GetLastPInvokeError() != Eagain)
                {
                    _disabled = true; // not supported here after all: copy from now on
                }

                break; // socket full (or end of file): the rest the ordinary way
            }
        }

        if (length > 0)
        {
            await CopyAsync(descriptor, offset, length, cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            foreach (int descriptor in _descriptors.Values)
            {
                if (descriptor >= 0)
                {
                    _ = Close(descriptor);
                }
            }

            _descriptors.Clear();
        }
    }

    /// <summary>
    /// True when the file behind <paramref name="descriptor"/> is one the process already has open (the engine's handle):
    /// a name that now leads to another file (replaced on disk, or relative to a directory that changed) is never used.
    /// </summary>
    private static bool OpenElsewhere(int descriptor)
    {
        try
        {
            string self = "/proc/self/fd/" + descriptor.ToString(System.Globalization.CultureInfo.InvariantCulture);
            string? target = new FileInfo(self).LinkTarget;
            if (target is null)
            {
                return false;
            }

            foreach (var entry in new DirectoryInfo("/proc/self/fd").EnumerateFileSystemInfos())
            {
                if (entry.FullName != self && string.Equals(entry.LinkTarget, target, StringComparison.Ordinal))
                {
                    return true;
                }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // No /proc: no proof, no sendfile.
        }

        return false;
    }

    private async ValueTask CopyAsync(int descriptor, long offset, long length, CancellationToken cancellationToken)
    {
        using var handle = new SafeFileHandle(descriptor, ownsHandle: false);
        byte[] buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, SegmentedBuffer.SegmentSize));
        try
        {
            while (length > 0)
            {
                int want = (int)Math.Min(length, buffer.Length);
                int got = await RandomAccess.ReadAsync(handle, buffer.AsMemory(0, want), offset, cancellationToken).ConfigureAwait(false);
                if (got <= 0)
                {
                    Array.Clear(buffer, 0, want); // past the end of the file reads as zeros, as the engine's reads do
                    got = want;
                }

                await _transport.WriteAsync(buffer.AsMemory(0, got), ReadOnlyMemory<byte>.Empty, cancellationToken).ConfigureAwait(false);
                offset += got;
                length -= got;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    [LibraryImport("libc", EntryPoint = "sendfile", SetLastError = true)]
    private static partial nint SendFileNative(int outDescriptor, int inDescriptor, ref long offset, nuint count);

    private static long SendFile(int outDescriptor, int inDescriptor, ref long offset, nuint count) => SendFileNative(outDescriptor, inDescriptor, ref offset, count);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int descriptor);
}
