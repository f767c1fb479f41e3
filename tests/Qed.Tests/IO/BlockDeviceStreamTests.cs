using Qed.Image;
using Qed.IO;
using Qed.Tests.Infrastructure;

namespace Qed.Tests.IO;

/// <summary>
/// <see cref="BlockDeviceStream"/>: every public member, sync and async, over raw devices in memory and on disk, and
/// over a QED image whose bytes qemu-io then reads back.
/// </summary>
public sealed class BlockDeviceStreamTests
{
    private const int DeviceSize = 64 * 1024;

    /// <summary>A writable (or read-only) raw device in memory whose byte i is (byte)(i * 7).</summary>
    private static RawImage Device(bool readOnly = false)
    {
        byte[] contents = new byte[DeviceSize];
        for (int i = 0; i < contents.Length; i++)
        {
            contents[i] = (byte)(i * 7);
        }
        return new RawImage(new MemoryFileAccessor("memory.raw", contents, readOnly));
    }

    private static byte Expected(long offset) => (byte)(offset * 7);

    private static async Task<int> ReadAsync(Stream stream, byte[] buffer, int offset, int count, bool async, bool span) =>
        (async, span) switch
        {
            (false, false) => stream.Read(buffer, offset, count),
            (false, true) => stream.Read(buffer.AsSpan(offset, count)),
            (true, false) => await stream.ReadAsync(buffer, offset, count, CancellationToken.None),
            (true, true) => await stream.ReadAsync(buffer.AsMemory(offset, count), CancellationToken.None),
        };

    private static async Task WriteAsync(Stream stream, byte[] buffer, int offset, int count, bool async, bool span)
    {
        switch (async, span)
        {
            case (false, false):
                stream.Write(buffer, offset, count);
                break;
            case (false, true):
                stream.Write(buffer.AsSpan(offset, count));
                break;
            case (true, false):
                await stream.WriteAsync(buffer, offset, count, CancellationToken.None);
                break;
            case (true, true):
                await stream.WriteAsync(buffer.AsMemory(offset, count), CancellationToken.None);
                break;
        }
    }

    [Fact]
    public void A_stream_reports_the_device_size_and_its_abilities()
    {
        using var writable = new BlockDeviceStream(Device());
        Assert.True(writable.CanRead);
        Assert.True(writable.CanSeek);
        Assert.True(writable.CanWrite);
        Assert.Equal(DeviceSize, writable.Length);
        Assert.Equal(0, writable.Position);

        using var readOnly = new BlockDeviceStream(Device(readOnly: true));
        Assert.True(readOnly.CanRead);
        Assert.True(readOnly.CanSeek);
        Assert.False(readOnly.CanWrite);
    }

    [Fact]
    public void The_constructor_refuses_null() =>
        Assert.Throws<ArgumentNullException>(() => new BlockDeviceStream(null!));

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Reads_return_the_device_bytes_at_the_position_and_advance_it(bool async, bool span)
    {
        using var stream = new BlockDeviceStream(Device());
        stream.Position = 1000;
        byte[] buffer = new byte[3000];
        // Into the middle of the buffer: the offset argument is honoured and the rest is left alone.
        int n = await ReadAsync(stream, buffer, 500, 2000, async, span);
        Assert.Equal(2000, n);
        Assert.Equal(3000, stream.Position);
        for (int i = 0; i < 2000; i++)
        {
            Assert.Equal(Expected(1000 + i), buffer[500 + i]);
        }
        Assert.All(buffer[..500], b => Assert.Equal(0, b));
        Assert.All(buffer[2500..], b => Assert.Equal(0, b));
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Reads_stop_at_the_end_of_the_device(bool async, bool span)
    {
        using var stream = new BlockDeviceStream(Device());
        byte[] buffer = new byte[100];

        stream.Position = DeviceSize - 40;
        Assert.Equal(40, await ReadAsync(stream, buffer, 0, 100, async, span));
        Assert.Equal(DeviceSize, stream.Position);
        Assert.Equal(Expected(DeviceSize - 1), buffer[39]);

        Assert.Equal(0, await ReadAsync(stream, buffer, 0, 100, async, span));
        Assert.Equal(DeviceSize, stream.Position);

        // A position past the end (allowed, as for files) reads nothing and stays where it is.
        stream.Position = DeviceSize + 12345;
        Assert.Equal(0, await ReadAsync(stream, buffer, 0, 100, async, span));
        Assert.Equal(DeviceSize + 12345, stream.Position);

        stream.Position = 0;
        Assert.Equal(0, await ReadAsync(stream, buffer, 0, 0, async, span));
        Assert.Equal(0, stream.Position);
    }

    [Fact]
    public void Read_checks_its_buffer_arguments()
    {
        using var stream = new BlockDeviceStream(Device());
        byte[] buffer = new byte[10];
        Assert.Throws<ArgumentNullException>(() => stream.Read(null!, 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Read(buffer, -1, 1));
        Assert.ThrowsAny<ArgumentException>(() => stream.Read(buffer, 5, 6));
        Assert.Equal(0, stream.Position);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Writes_land_on_the_device_at_the_position_and_advance_it(bool async, bool span)
    {
        using var device = Device();
        using var stream = new BlockDeviceStream(device, leaveOpen: true);
        byte[] data = new byte[5000];
        Array.Fill(data, (byte)0xa5, 1000, 3000);
        stream.Position = 7000;
        await WriteAsync(stream, data, 1000, 3000, async, span);
        Assert.Equal(10_000, stream.Position);

        byte[] back = new byte[3002];
        device.Read(back, 6999);
        Assert.Equal(Expected(6999), back[0]);
        Assert.All(back[1..3001], b => Assert.Equal(0xa5, b));
        Assert.Equal(Expected(10_000), back[3001]);

        // Up to the last byte is fine.
        stream.Position = DeviceSize - 10;
        await WriteAsync(stream, data, 1000, 10, async, span);
        Assert.Equal(DeviceSize, stream.Position);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task A_write_past_the_end_is_refused_and_changes_nothing(bool async, bool span)
    {
        using var device = Device();
        using var stream = new BlockDeviceStream(device, leaveOpen: true);
        byte[] data = new byte[100];
        Array.Fill(data, (byte)0xff);

        stream.Position = DeviceSize - 50;
        var error = await Assert.ThrowsAsync<IOException>(() => WriteAsync(stream, data, 0, 100, async, span));
        Assert.Contains("would pass the end", error.Message, StringComparison.Ordinal);
        Assert.Equal(DeviceSize - 50, stream.Position);

        stream.Position = DeviceSize + 1;
        await Assert.ThrowsAsync<IOException>(() => WriteAsync(stream, data, 0, 1, async, span));

        byte[] tail = new byte[50];
        device.Read(tail, DeviceSize - 50);
        for (int i = 0; i < tail.Length; i++)
        {
            Assert.Equal(Expected(DeviceSize - 50 + i), tail[i]);
        }
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task A_read_only_device_refuses_writes_and_its_flush_does_nothing(bool async, bool span)
    {
        using var stream = new BlockDeviceStream(Device(readOnly: true));
        await Assert.ThrowsAsync<NotSupportedException>(() => WriteAsync(stream, new byte[10], 0, 10, async, span));
        Assert.Equal(0, stream.Position);
        if (async)
        {
            await stream.FlushAsync();
        }
        else
        {
            stream.Flush();
        }
        byte[] buffer = new byte[4];
        Assert.Equal(4, await ReadAsync(stream, buffer, 0, 4, async, span));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Flush_reaches_the_file(bool async)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.raw");
        RawImage.Create(path, DeviceSize).Dispose();
        using (var stream = new BlockDeviceStream(RawImage.Open(path)))
        {
            stream.Position = 4096;
            stream.Write([1, 2, 3, 4]);
            if (async)
            {
                await stream.FlushAsync();
            }
            else
            {
                stream.Flush();
            }
            // Read through another handle while the stream is still open.
            using var other = File.Open(path, new FileStreamOptions { Access = FileAccess.Read, Share = FileShare.ReadWrite });
            byte[] back = new byte[4];
            other.Position = 4096;
            other.ReadExactly(back);
            Assert.Equal(new byte[] { 1, 2, 3, 4 }, back);
        }
    }

    [Fact]
    public void Seek_moves_from_each_origin_but_never_before_the_start()
    {
        using var stream = new BlockDeviceStream(Device());
        Assert.Equal(100, stream.Seek(100, SeekOrigin.Begin));
        Assert.Equal(150, stream.Seek(50, SeekOrigin.Current));
        Assert.Equal(120, stream.Seek(-30, SeekOrigin.Current));
        Assert.Equal(DeviceSize - 8, stream.Seek(-8, SeekOrigin.End));
        Assert.Equal(DeviceSize + 8, stream.Seek(8, SeekOrigin.End));
        Assert.Equal(DeviceSize + 8, stream.Position);

        Assert.Throws<IOException>(() => stream.Seek(-1, SeekOrigin.Begin));
        Assert.Throws<IOException>(() => stream.Seek(-(DeviceSize + 9), SeekOrigin.Current));
        Assert.Throws<IOException>(() => stream.Seek(-(DeviceSize + 1), SeekOrigin.End));
        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Seek(0, (SeekOrigin)7));
        Assert.Equal(DeviceSize + 8, stream.Position);

        Assert.Throws<ArgumentOutOfRangeException>(() => stream.Position = -1);
        Assert.Equal(DeviceSize + 8, stream.Position);
    }

    [Fact]
    public void The_length_is_fixed()
    {
        using var stream = new BlockDeviceStream(Device());
        Assert.Throws<NotSupportedException>(() => stream.SetLength(DeviceSize * 2));
        Assert.Throws<NotSupportedException>(() => stream.SetLength(10));
        Assert.Equal(DeviceSize, stream.Length);
    }

    [Fact]
    public void Two_streams_over_one_device_keep_their_own_positions()
    {
        using var device = Device();
        using var first = new BlockDeviceStream(device, leaveOpen: true);
        using var second = new BlockDeviceStream(device, leaveOpen: true);
        first.Position = 10;
        byte[] buffer = new byte[1];
        second.ReadExactly(buffer);
        Assert.Equal(Expected(0), buffer[0]);
        first.ReadExactly(buffer);
        Assert.Equal(Expected(10), buffer[0]);
        Assert.Equal(11, first.Position);
        Assert.Equal(1, second.Position);
    }

    [Fact]
    public void CopyTo_copies_the_whole_device()
    {
        using var stream = new BlockDeviceStream(Device());
        using var copy = new MemoryStream();
        stream.CopyTo(copy, bufferSize: 5000);
        Assert.Equal(DeviceSize, copy.Length);
        byte[] bytes = copy.ToArray();
        for (int i = 0; i < bytes.Length; i++)
        {
            Assert.Equal(Expected(i), bytes[i]);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Disposing_the_stream_closes_the_device_unless_asked_to_leave_it_open(bool leaveOpen)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.raw");
        RawImage.Create(path, DeviceSize).Dispose();
        var device = RawImage.Open(path);
        try
        {
            var stream = new BlockDeviceStream(device, leaveOpen);
            await stream.DisposeAsync();
            stream.Dispose();    // twice is harmless

            Assert.False(stream.CanRead);
            Assert.False(stream.CanSeek);
            Assert.False(stream.CanWrite);
            Assert.Throws<ObjectDisposedException>(() => stream.Length);
            Assert.Throws<ObjectDisposedException>(() => stream.Read(new byte[1], 0, 1));
            Assert.Throws<ObjectDisposedException>(() => stream.Write(new byte[1], 0, 1));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => Assert.Equal(0, await stream.ReadAsync(new byte[1])));
            await Assert.ThrowsAsync<ObjectDisposedException>(async () => await stream.WriteAsync(new byte[1]));

            byte[] one = new byte[1];
            if (leaveOpen)
            {
                device.Read(one, 0);
                device.Write(one, 0);
            }
            else
            {
                Assert.ThrowsAny<ObjectDisposedException>(() => device.Read(one, 0));
            }
        }
        finally
        {
            device.Dispose();
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_stream_over_a_qed_image_writes_what_qemu_io_reads(bool async)
    {
        using var dir = new TempDirectory();
        string path = dir.File("disk.qed");
        QedImage.Create(path, new QedCreateOptions { Size = 16L << 20 });
        byte[] pattern = new byte[192 * 1024];    // spans four 64 KiB clusters from an unaligned start
        Array.Fill(pattern, (byte)0x3c);
        await using (var stream = new BlockDeviceStream(QedImage.Open(path)))
        {
            Assert.Equal(16L << 20, stream.Length);
            stream.Seek(3 * 65536 - 4096, SeekOrigin.Begin);
            if (async)
            {
                await stream.WriteAsync(pattern);
                await stream.FlushAsync();
            }
            else
            {
                stream.Write(pattern);
                stream.Flush();
            }
            Assert.Equal(3 * 65536 - 4096 + pattern.Length, stream.Position);
        }
        Tools.QemuIo(dir.Path, "qed", path,
            $"read -P 0x3c {3 * 65536 - 4096} {pattern.Length}",
            $"read -P 0 0 {3 * 65536 - 4096}",
            $"read -P 0 {3 * 65536 - 4096 + pattern.Length} 65536");
        Assert.Equal(0, Tools.QemuImgRaw(dir.Path, "check", path).ExitCode);
    }
}
