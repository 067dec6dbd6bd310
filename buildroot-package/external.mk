include $(sort $(wildcard $(BR2_EXTERNAL_DEFENDER_IOT_PATH)/package/*/*.mk))
