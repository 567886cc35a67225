-- Certificate renewal: the serial a device used before its last renewal,
-- still accepted until the device connects with the new one (in case the
-- renewed certificate never reached it); every other serial is refused.
ALTER TABLE devices ADD COLUMN prev_cert_serial TEXT;
