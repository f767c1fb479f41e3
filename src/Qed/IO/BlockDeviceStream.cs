using System.Buffers;

namespace Qed.IO;

/// <summary>
/// A seekable <see cref="Stream"/> over a <see cref="BlockDevice"/>, for callers that want one.
/// </summary>
/// <remarks>
/// The position lives here, in the adapter, never in the device: two streams over one device are independent,
/// and a stream is no more thread-safe than any other <see cref="Stream"/>. The length is the device's size;
/// writes past it are refused (a disk does not grow by writing). Errors follow <see cref="Stream"/>'s contract rather than
/// the device's: a write to a read-only device throws <see cref="NotSupportedException"/> (<see cref="CanWrite"/> is false).
/// </remarks>
public sealed class BlockDeviceStream : Stream
{
    private readonly BlockDevice _device;
    private readonly bool _leaveOpen;
    private long _position;
    private bool _disposed;

    /// <summary>Wraps <paramref name="device"/>; disposing the stream disposes the device unless <paramref name="leaveOpen"/>.</summary>
    public BlockDeviceStream(BlockDevice device, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(device);
        _device = device;
        _leaveOpen = leaveOpen;
    }

    /// <inheritdoc />
    public override bool CanRead => !_disposed;

    /// <inheritdoc />
    public override bool CanSeek => !_disposed;

    /// <inheritdoc />
    public override bool CanWrite => !_disposed && !_device.IsReadOnly;

    /// <inheritdoc />
    public override long Length
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _device.Size;
        }
    }

    /// <inheritdoc />
    public override long Position
    {
        get => _position;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _position = value;
        }
    }

    /// <inheritdoc />
    public override int Read(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        return Read(buffer.AsSpan(offset, count));
    }

    /// <inheritdoc />
    public override int Read(Span<byte> buffer)
    {
        // The device reads into Memory (one code path for sync and async); a Span caller gets a pooled bounce buffer.
        byte[] array = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            int n = Read(array.AsMemory(0, buffer.Length));
            array.AsSpan(0, n).CopyTo(buffer);
            return n;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    private int Read(Memory<byte> buffer)
    {
        int n = Clamp(buffer.Length);
        if (n > 0)
        {
            _device.Read(buffer[..n], _position);
            _position += n;
        }
        return n;
    }

    /// <inheritdoc />
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int n = Clamp(buffer.Length);
        if (n > 0)
        {
            await _device.ReadAsync(buffer[..n], _position, cancellationToken).ConfigureAwait(false);
            _position += n;
        }
        return n;
    }

    /// <inheritdoc />
    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override void Write(byte[] buffer, int offset, int count)
    {
        ValidateBufferArguments(buffer, offset, count);
        CheckWrite(count);
        _device.Write(buffer.AsMemory(offset, count), _position);
        _position += count;
    }

    /// <inheritdoc />
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        byte[] array = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            buffer.CopyTo(array);
            Write(array, 0, buffer.Length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(array);
        }
    }

    /// <inheritdoc />
    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        CheckWrite(buffer.Length);
        await _device.WriteAsync(buffer, _position, cancellationToken).ConfigureAwait(false);
        _position += buffer.Length;
    }

    /// <inheritdoc />
    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    /// <inheritdoc />
    public override void Flush()
    {
        if (CanWrite)
        {
            _device.Flush();
        }
    }

    /// <inheritdoc />
    public override Task FlushAsync(CancellationToken cancellationToken) =>
        CanWrite ? _device.FlushAsync(cancellationToken).AsTask() : Task.CompletedTask;

    /// <inheritdoc />
    public override long Seek(long offset, SeekOrigin origin)
    {
        long target = origin switch
        {
            SeekOrigin.Begin => offset,
            SeekOrigin.Current => _position + offset,
            SeekOrigin.End => _device.Size + offset,
            _ => throw new ArgumentOutOfRangeException(nameof(origin)),
        };
        if (target < 0)
        {
            throw new IOException("An attempt was made to move the position before the beginning of the stream.");
        }
        _position = target;
        return target;
    }

    /// <inheritdoc />
    public override void SetLength(long value) =>
        throw new NotSupportedException("A block device stream has the device's fixed size; resize the image instead.");

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (!_disposed && disposing && !_leaveOpen)
        {
            _device.Dispose();
        }
        _disposed = true;
        base.Dispose(disposing);
    }

    private int Clamp(int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return (int)Math.Clamp(_device.Size - _position, 0, count);
    }

    private void CheckWrite(int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_device.IsReadOnly)
        {
            throw new NotSupportedException("The device is read-only.");
        }
        if (_position > _device.Size - count)
        {
            throw new IOException($"Writing {count} bytes at position {_position} would pass the end of the {_device.Size}-byte device.");
        }
    }
}
